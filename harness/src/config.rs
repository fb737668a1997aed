//! The harness's configuration from the environment, read in one place (after wasmtime's
//! `build_allowed_env_list`): the backends take explicit options and read no variables.
//! A value that names nothing is an error that lists the valid values, never a silent
//! default: a mistyped fault injection must not turn into a run that injects nothing.
//!
//! | variable | read by | meaning |
//! |---|---|---|
//! | `GMEMFUZZ_SKIP_OP=<op kind>` | every tool that opens KVM: fuzz targets, `run`, `replay`, `minimize`, `c-repro`, `add-regression`, `bench`, the regression test | fault injection: the KVM backend reports ops of this kind as done without doing them |
//! | `GMEMFUZZ_VM_TYPE=<n>` | the `diff_kvm` fuzz target | KVM_CREATE_VM type (0 by default; 1 = KVM_X86_SW_PROTECTED_VM) |
//! | `GMEMFUZZ_VERIFY_RESET` (set) | the `diff_kvm` fuzz target | also run each input on a fresh VM and compare (reset check) |
//!
//! The test-only switches (`GMEMFUZZ_LANE`, `GMEMFUZZ_WRITE_SEEDS`) and the lane scripts'
//! variables stay where they are read.

use gmemfuzz_backends::kvm::{KvmBackend, KvmOptions};
use gmemfuzz_backends::{HarnessError, OpKind};

pub const SKIP_OP: &str = "GMEMFUZZ_SKIP_OP";
pub const VM_TYPE: &str = "GMEMFUZZ_VM_TYPE";
pub const VERIFY_RESET: &str = "GMEMFUZZ_VERIFY_RESET";

/// A configuration value that names nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    UnknownOpKind(String),
    #[error("{VM_TYPE}={0:?} is not a VM type: give a number (0 = default, 1 = KVM_X86_SW_PROTECTED_VM)")]
    BadVmType(String),
    #[error("{0} is not valid Unicode")]
    NotUnicode(&'static str),
}

/// An op kind by its text-format name; the error lists every valid name. Also clap's
/// `value_parser` for `--skip-op`.
pub fn parse_op_kind(name: &str) -> Result<OpKind, String> {
    name.parse::<OpKind>().map_err(|_| format!("`{name}` names no op kind; valid names: {}", OpKind::names().join(", ")))
}

/// Every GMEMFUZZ_* value the Rust harness reads, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    pub skip_op: Option<OpKind>,
    pub vm_type: Option<u64>,
    pub verify_reset: bool,
}

impl Env {
    /// Reads the process environment.
    pub fn read() -> Result<Env, ConfigError> {
        Env::from_vars(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode(name_of(name))),
        })
    }

    /// Parses the values `var` gives for each variable name (tests pass their own).
    pub fn from_vars(var: impl Fn(&str) -> Result<Option<String>, ConfigError>) -> Result<Env, ConfigError> {
        let skip_op = match var(SKIP_OP)? {
            None => None,
            Some(name) => Some(parse_op_kind(&name).map_err(|why| ConfigError::UnknownOpKind(format!("{SKIP_OP}: {why}")))?),
        };
        let vm_type = match var(VM_TYPE)? {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|_| ConfigError::BadVmType(v))?),
        };
        let verify_reset = var(VERIFY_RESET)?.is_some();
        Ok(Env { skip_op, vm_type, verify_reset })
    }

    /// The KVM backend's options for a VM of `vm_type`.
    pub fn kvm_options(&self, vm_type: u64) -> KvmOptions {
        KvmOptions { vm_type, skip_op: self.skip_op }
    }
}

fn name_of(var: &str) -> &'static str {
    [SKIP_OP, VM_TYPE, VERIFY_RESET].into_iter().find(|v| *v == var).unwrap_or("a GMEMFUZZ_* variable")
}

/// Why the configured KVM backend did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is wrong: a usage error, never a reason to skip.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] HarnessError),
}

/// Opens the KVM backend with these options, announcing a fault injection on stderr.
pub fn open_kvm_with(options: &KvmOptions) -> Result<KvmBackend, HarnessError> {
    let backend = KvmBackend::with_options(options)?;
    if let Some(kind) = options.skip_op {
        eprintln!("gmemfuzz: FAULT INJECTION: the KVM backend silently skips every `{}` op ({SKIP_OP})", kind.name());
    }
    Ok(backend)
}

/// Opens the KVM backend for a VM of `vm_type` as the environment configures it.
pub fn open_kvm(vm_type: u64) -> Result<KvmBackend, OpenError> {
    let env = Env::read()?;
    Ok(open_kvm_with(&env.kvm_options(vm_type))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, ConfigError> {
        Env::from_vars(|name| Ok(pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())))
    }

    #[test]
    fn unset_variables_configure_nothing() {
        assert_eq!(env(&[]), Ok(Env::default()));
    }

    #[test]
    fn skip_op_names_an_op_kind() {
        assert_eq!(env(&[(SKIP_OP, "punch")]).unwrap().skip_op, Some(OpKind::Punch));
        assert_eq!(env(&[(SKIP_OP, "set_attributes")]).unwrap().skip_op, Some(OpKind::SetAttributes));
    }

    #[test]
    fn a_bogus_skip_op_is_an_error_naming_the_valid_ones() {
        let err = env(&[(SKIP_OP, "bogus")]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::UnknownOpKind(_)), "{err:?}");
        assert!(msg.contains("GMEMFUZZ_SKIP_OP") && msg.contains("`bogus`"), "{msg}");
        for kind in OpKind::ALL {
            assert!(msg.contains(kind.name()), "{msg} lacks {}", kind.name());
        }
        // Names are exact: no case folding, no prefixes.
        assert!(env(&[(SKIP_OP, "Punch")]).is_err());
        assert!(env(&[(SKIP_OP, "")]).is_err());
    }

    #[test]
    fn vm_type_is_a_number() {
        assert_eq!(env(&[(VM_TYPE, "1")]).unwrap().vm_type, Some(1));
        let err = env(&[(VM_TYPE, "sw")]).unwrap_err();
        assert_eq!(err, ConfigError::BadVmType("sw".into()));
        assert!(err.to_string().contains("GMEMFUZZ_VM_TYPE"), "{err}");
    }

    #[test]
    fn verify_reset_is_a_switch() {
        assert!(env(&[(VERIFY_RESET, "")]).unwrap().verify_reset);
    }

    #[test]
    fn parse_op_kind_serves_the_command_line() {
        assert_eq!(parse_op_kind("modify_slot"), Ok(OpKind::ModifySlot));
        let err = parse_op_kind("punch-hole").unwrap_err();
        assert!(err.contains("valid names: create_gmem, map, bind"), "{err}");
    }
}

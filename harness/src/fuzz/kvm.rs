//! The `diff_kvm` target: the model against real KVM on /dev/kvm.

use std::sync::Mutex;

use gmemfuzz_backends::kvm::{KvmBackend, KvmOptions};
use gmemfuzz_backends::Backend;
use libfuzzer_sys::Corpus;

use super::{input, settle, Crash, Session};
use crate::config::{open_kvm_with, Env};
use crate::runner::{check_reset, Runner};

struct KvmSession {
    session: Session<KvmBackend>,
    /// GMEMFUZZ_VERIFY_RESET: run each input on a reused VM and on a new one and compare.
    verify_reset: bool,
    /// How the backend was opened: a reset check opens a second one the same way.
    options: KvmOptions,
}

static KVM_SESSION: Mutex<Option<KvmSession>> = Mutex::new(None);

fn kvm_session() -> std::sync::MutexGuard<'static, Option<KvmSession>> {
    let mut guard = KVM_SESSION.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        // A configuration value that names nothing stops the fuzzer (see `config`).
        let env = Env::read().unwrap_or_else(|e| {
            eprintln!("gmemfuzz: configuration error: {e}");
            std::process::exit(2);
        });
        let options = env.kvm_options(env.vm_type.unwrap_or(0));
        match open_kvm_with(&options) {
            Ok(backend) => {
                eprintln!("gmemfuzz: diff_kvm on {}", backend.profile().summary());
                let mut runner = Runner::new(backend);
                runner.filter_known = true;
                *guard = Some(KvmSession {
                    session: Session::new(runner, "diff_kvm", save_stats_at_exit),
                    verify_reset: env.verify_reset,
                    options,
                });
            }
            Err(e) => {
                eprintln!("gmemfuzz: diff_kvm cannot fuzz real KVM here: {e}");
                eprintln!("gmemfuzz: fuzz/run.sh runs it in the lane (QEMU) on such a host; the `model` target runs anywhere.");
                std::process::exit(2);
            }
        }
    }
    guard
}

/// Saves the stats at exit (`GMEMFUZZ_STATS_DIR`); skipped when the session is locked
/// (the process is exiting from inside the target).
extern "C" fn save_stats_at_exit() {
    if let Ok(mut guard) = KVM_SESSION.try_lock() {
        if let Some(s) = guard.as_mut() {
            s.session.stats_file.save(&s.session.runner.stats);
        }
    }
}

/// The `diff_kvm` target: the model against real KVM.
/// Opens the KVM session before libFuzzer runs any input (its `init:`): a host that lacks
/// what diff_kvm needs stops the fuzzer here with the reason, and libFuzzer, which saves the
/// input at an exit only while an input runs, writes no crash artifact.
pub fn diff_kvm_init() {
    drop(kvm_session());
}

pub fn diff_kvm(data: &[u8]) -> Corpus {
    let mut guard = kvm_session();
    let KvmSession { session, verify_reset, options } = guard.as_mut().expect("made above");
    let profile = session.runner.backend.profile().clone();
    let Some(program) = input::decode(data, &profile) else {
        return Corpus::Reject;
    };
    let crash = Crash { data, program: &program, profile: &profile };
    let corpus = if *verify_reset {
        let fresh = open_kvm_with(options).unwrap_or_else(|e| crash.report(&format!("gmemfuzz HARNESS BUG: second VM: {e}")));
        if let Err(msg) = check_reset(&mut session.runner, fresh, &program) {
            crash.report(&msg.to_string());
        }
        Corpus::Keep
    } else {
        let result = session.runner.run(&program);
        if result.is_err() {
            // A finding aborts the process: keep its counts first.
            session.stats_file.save(&session.runner.stats);
        }
        settle(result, crash)
    };
    session.print_stats_now_and_then("diff_kvm");
    corpus
}

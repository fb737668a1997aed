//! Crash reproduction: reading, replaying, shrinking and exporting programs.
//!
//! Commands (`gmemfuzz <command> --help` for details):
//!
//! - `show <file>`: print a program in the text format ([`text`]). `<file>` is a text
//!   program or a libFuzzer artifact: the `.txt` the fuzz target saved beside it when
//!   present, else the raw fuzzer bytes decoded for `--vm-type` (see [`load`]).
//! - `replay <file> [--vm-type N]` (N defaults to the file's `# vm-type:`, else 0; one
//!   that contradicts the file is refused, as in the commands below): run the program in lockstep on the model and a fresh
//!   real-KVM backend and print every op with the model's and KVM's outcome, marking the
//!   first divergence ([`replay`]). Exit status 1 on a divergence, 0 when clean, 2 on a
//!   harness or usage error (including no usable /dev/kvm).
//! - `minimize <file> [-o out.txt]`: shrink a diverging program to the smallest one that
//!   still shows the same divergence (same kind, same op kind): ops are deleted (chunks,
//!   then single ops, renumbering files), then arguments simplified ([`shrink`]); the
//!   result is confirmed once on a brand-new backend.
//! - `c-repro <file> [-o out.c]`: write a standalone C program doing what the KVM backend
//!   does, comparing each op's result with the model's prediction ([`c`]); it exits 1 when
//!   the divergence reproduces.
//! - `selftest <file> [-o NAME.c]`: write a KVM selftest (tools/testing/selftests/kvm, the
//!   selftests' own library) doing the program's ops and asserting the model's
//!   expectations ([`selftest`]).
//! - `add-regression <file> --name NAME [--minimize]`: run the program and store it, with
//!   what it showed as its `# expect:` line, in `corpus/regressions/NAME.txt`; the test
//!   `harness/tests/regressions.rs` replays every file there.

pub mod c;
pub mod cli;
pub mod load;
pub mod replay;
pub mod selftest;
pub mod shrink;
pub mod text;
mod v1;

pub use load::{load, load_document};
pub use text::{parse, parse_document, print, print_with, Document, Expectation, ParseError};

use crate::runner::RunError;

/// What a run showed, as an expectation line records it.
pub fn observed<T>(result: &Result<T, RunError>) -> Option<Expectation> {
    match result {
        Ok(_) => Some(Expectation::Clean),
        Err(RunError::Divergence(d)) => Some(Expectation::Divergence { kind: d.kind, op: d.op_index }),
        Err(RunError::Harness(_)) => None,
    }
}

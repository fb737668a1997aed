//! gmemfuzz: generate guest_memfd programs, run them in lockstep on the reference model
//! and a backend, and report every divergence.
//!
//! Data flows one way: bytes -> `Program` -> `Runner` -> (model, backend) -> `oracle`.

pub mod cli;
pub mod config;
pub mod coverage;
pub mod fuzz;
pub mod gen;
pub mod input;
pub mod kcov;
pub mod kernel;
pub mod known;
pub mod lane;
pub mod oracle;
pub mod program;
pub mod report;
pub mod repro;
pub mod runner;
pub mod scenarios;
pub mod splat;
pub mod stats;
pub mod timing;

pub use program::Program;
pub use runner::{RunError, Runner, Trace};

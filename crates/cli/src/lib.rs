//! The `bigbatch` command line, as a library so that tests drive the very same path: clap
//! arguments ([`commands`]) and one call into the libraries per command. What a command does
//! lives in `bigbatch-engine` (training), `bigbatch-studies` (studies, reports, the
//! reproduction), `bigbatch-workloads` (the built-in workloads, BERT data) and `bigbatch-core`.

pub mod commands;

pub use bigbatch_engine::keep_freed_memory;
pub use commands::run_cli;

/// Names every optimizer and workload crate this binary ships so the linker keeps their
/// registrations.
pub fn link_plugins() {
    bigbatch_optim_sgd::link();
    bigbatch_optim_lamb::link();
    bigbatch_optim_lars::link();
    bigbatch_optim_adam::link();
    bigbatch_workloads::link();
}

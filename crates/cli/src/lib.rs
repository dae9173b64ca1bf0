//! The `bigbatch` command line, as a library so that tests drive the very same path.
//!
//! Data path, top to bottom: [`run_config`] (RON files + `--set` -> [`run_config::RunConfig`]) ->
//! [`train::run`] (model + parameter groups -> optimizer -> train loop, whose steps
//! [`step::step`] cuts into micro-batches and devices -> metrics in the run directory).
//! Workloads ([`workload::Workload`]: [`classify`], [`pretrain`]) supply model, data and loss.

pub mod backend;
pub mod bert_data;
pub mod classify;
pub mod commands;
pub mod pretrain;
pub mod report;
pub mod reproduce;
pub mod run_config;
pub mod run_dir;
pub mod step;
pub mod study;
pub mod train;
pub mod workload;

pub use commands::run_cli;

/// Names every optimizer crate this binary ships so the linker keeps their registrations.
pub fn link_plugins() {
    bigbatch_optim_sgd::link();
    bigbatch_optim_lamb::link();
    bigbatch_optim_lars::link();
    bigbatch_optim_adam::link();
}

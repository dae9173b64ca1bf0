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

/// Makes glibc's allocator keep freed memory for reuse. burn's CPU backend allocates a fresh
/// buffer for most operation results; by default glibc serves large ones with `mmap` and gives
/// them back at `free`, so every training step paid page faults on zero-filled pages again
/// (13% of a bert-tiny step's samples in perf). Here blocks up to 32 MiB (glibc's largest
/// threshold) come from the heap, which is never trimmed and grows 512 MiB at a time: bert-tiny
/// forward + backward is 18-29% faster (docs/benchmarks.md). Call it at the start of `main`.
/// Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters (under the allocator's lock); a refused
    // value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}

/// Names every optimizer crate this binary ships so the linker keeps their registrations.
pub fn link_plugins() {
    bigbatch_optim_sgd::link();
    bigbatch_optim_lamb::link();
    bigbatch_optim_lars::link();
    bigbatch_optim_adam::link();
}

//! The bigbatch training engine: one training run from a composed config to its run directory.
//!
//! Data path, top to bottom: [`run_config`] (RON files + `--set` -> [`run_config::RunConfig`],
//! checked by the workload's plugin) -> [`train::run`] (the backend's devices, the run directory,
//! the workload from the [`workload`] registry) -> [`train::train_loop`] (model + parameter groups
//! -> optimizer -> steps, each cut by [`step`] into micro-batches and devices -> metrics,
//! diagnostics and TensorBoard files ([`records`]) and checkpoints in the run directory,
//! [`run_dir`]).
//!
//! Depends on core, models and data (for the config types of the built-in workloads); must not
//! depend on clap, studies, concrete optimizers or the code of any workload: workloads (the
//! built-in ResNet and BERT ones in `bigbatch-workloads`) implement [`workload::Workload`] and
//! register a [`workload::WorkloadPlugin`]. [`backend`] is the one module that names a backend.

pub mod backend;
pub mod interrupt;
pub mod records;
pub mod run;
pub mod run_config;
pub mod run_dir;
pub mod settings;
pub mod step;
pub mod tensorboard;
pub mod train;
pub mod workload;

/// Re-exported so that workload crates can call `bigbatch_engine::inventory::submit!`.
pub use inventory;

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

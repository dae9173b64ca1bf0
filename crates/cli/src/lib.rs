//! The `bigbatch` command line, as a library so that tests drive the very same path: clap
//! arguments ([`commands`]) and one call into the libraries per command. What a command does
//! lives in `bigbatch-engine` (training), `bigbatch-studies` (studies, reports, the
//! reproduction), `bigbatch-workloads` (the built-in workloads, BERT data) and `bigbatch-core`.

pub mod commands;

pub use bigbatch_engine::keep_freed_memory;
pub use commands::run_cli;

/// The `bigbatch` binary's `main`: the allocator setting, the SIGTERM/SIGINT handlers
/// ([`bigbatch_engine::interrupt`]), the CPU thread pool sized from a Slurm allocation, then the
/// command; exits 1 on an error and [`bigbatch_engine::interrupt::EXIT_INTERRUPTED`] (75) when a
/// signal stopped a run (checkpoint written; resumable).
pub fn main() -> ! {
    keep_freed_memory();
    if let Err(e) = bigbatch_engine::interrupt::install() {
        eprintln!(
            "warning: cannot handle SIGTERM/SIGINT ({e:#}); a signal ends runs without a checkpoint"
        );
    }
    bigbatch_engine::interrupt::threads_from_allocation();
    match run_cli(std::env::args_os()) {
        Ok(()) => std::process::exit(0),
        Err(e)
            if e.chain()
                .any(|c| c.is::<bigbatch_engine::interrupt::Interrupted>()) =>
        {
            eprintln!("{e:#}");
            std::process::exit(bigbatch_engine::interrupt::EXIT_INTERRUPTED);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Names every optimizer and workload crate this binary ships so the linker keeps their
/// registrations.
pub fn link_plugins() {
    bigbatch_optim_sgd::link();
    bigbatch_optim_lamb::link();
    bigbatch_optim_lars::link();
    bigbatch_optim_adam::link();
    bigbatch_workloads::link();
}

//! Preemption-safe runs: SIGTERM (a cluster's time limit or `scancel`) and SIGINT (Ctrl-C) ask the
//! training loop to stop after the step in flight. It then writes a checkpoint at that step,
//! records `interrupted` (neither completed nor diverged) and the process exits with
//! [`EXIT_INTERRUPTED`]; `--resume` (a study's next `trial` or `run`) continues exactly. A second
//! SIGINT or SIGTERM while the first is handled ends the process at once (exit code 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of an interrupted run: 75, `EX_TEMPFAIL` of `sysexits.h` ("a temporary failure;
/// the user is invited to retry"). The Slurm script requeues a task that exits with it.
pub const EXIT_INTERRUPTED: i32 = 75;

static REQUESTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the SIGTERM and SIGINT handlers (once per process; the binary calls it at start).
pub fn install() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGTERM, SIGINT] {
            // The second signal exits at once; the first only sets the flag.
            signal_hook::flag::register_conditional_shutdown(signal, 1, flag().clone())?;
            signal_hook::flag::register(signal, flag().clone())?;
        }
    }
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// The error of a run or study stopped by [`requested`]; the binary exits with
/// [`EXIT_INTERRUPTED`] on it.
#[derive(Debug)]
pub struct Interrupted {
    /// What stopped, and where it can continue from.
    pub what: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.what)
    }
}

impl std::error::Error for Interrupted {}

/// Sizes the CPU thread pool (burn's `flex` backend and its matrix products run on rayon's
/// global pool) from the cluster allocation: `SLURM_CPUS_PER_TASK` when set and
/// `RAYON_NUM_THREADS` is not (by default rayon takes every core of the node). Returns the size
/// set, if any.
pub fn threads_from_allocation() -> Option<usize> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let n: usize = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if n == 0 {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .ok()
        .map(|_| n)
}

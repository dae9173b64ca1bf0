//! `bigbatch train | schedule | optimizers`.

use crate::backend::{self, Backend};
use crate::run_config::{DataSource, RunConfig};
use crate::train::{self, RunOptions, Status};
use anyhow::Result;
use bigbatch_core::registry;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "bigbatch",
    version,
    about = "Fair, reproducible optimizer comparisons at large batch sizes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one model with one optimizer configuration.
    Train {
        /// RON config files, composed in order (later files replace whole sections).
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// Override one field: `--set schedule.peak=2.5` (values are JSON; bare words are strings).
        #[arg(long = "set")]
        sets: Vec<String>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// Read MNIST/Fashion-MNIST IDX files from this directory instead of the embedded subset.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run directory (default: runs/<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Print a config's learning-rate schedule as `step,lr` CSV.
    Schedule {
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        #[arg(long = "set")]
        sets: Vec<String>,
        /// Number of steps to print (default: the config's `train.steps`).
        #[arg(long)]
        steps: Option<u64>,
    },
    /// List the registered optimizers and their config fields.
    Optimizers,
}

/// Runs the command line `args` (the first item is the program name).
pub fn run_cli<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    crate::link_plugins();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            e.print()?;
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    match cli.command {
        Command::Train {
            configs,
            sets,
            backend,
            data,
            out,
            no_progress,
        } => {
            registry::check()?;
            let mut config = RunConfig::compose(&configs, &sets)?;
            if let Some(dir) = data {
                config.data.source = DataSource::Idx(dir);
            }
            let device = backend::device(backend)?;
            let out_dir = out.unwrap_or_else(default_run_dir);
            let options = RunOptions {
                out_dir: out_dir.clone(),
                progress: !no_progress && std::io::stderr().is_terminal(),
            };
            let summary = train::run(&config, &device, &options)?;
            match summary.status {
                Status::Completed => {
                    println!("run directory: {}", out_dir.display());
                    println!("steps: {}  time: {:.1}s", summary.steps, summary.seconds);
                    if let (Some(v), Some(t)) =
                        (summary.final_val_accuracy, summary.final_train_accuracy)
                    {
                        println!("final validation accuracy: {:.2}%", v * 100.0);
                        println!("final training accuracy:   {:.2}%", t * 100.0);
                    }
                }
                Status::Diverged => {
                    println!("run directory: {}", out_dir.display());
                    println!(
                        "diverged: {}",
                        summary.reason.as_deref().unwrap_or("non-finite loss")
                    );
                }
            }
            Ok(())
        }
        Command::Schedule {
            configs,
            sets,
            steps,
        } => {
            let config = RunConfig::compose(&configs, &sets)?;
            print!(
                "{}",
                config.schedule.to_csv(steps.unwrap_or(config.train.steps))
            );
            Ok(())
        }
        Command::Optimizers => {
            registry::check()?;
            for p in registry::plugins() {
                println!(
                    "{}\n    {}\n    config: {}\n",
                    p.name, p.description, p.config_doc
                );
            }
            Ok(())
        }
    }
}

fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("run-{secs}"))
}

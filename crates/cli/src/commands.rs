//! `bigbatch train | schedule | optimizers | workloads | replay | study | report | reproduce |
//! diagnostics | tensorboard | bert-vocab | bert-data`: the arguments of each command and the library call it makes.

use anyhow::{Context, Result, bail};
use bigbatch_core::config::write_atomic;
use bigbatch_core::registry;
use bigbatch_core::replay::{Precision, Trace, parse_json, replay};
use bigbatch_data::bert::CreationConfig;
use bigbatch_engine::backend::{self, Backend};
use bigbatch_engine::run_config::{DataSource, RunConfig, compose_optimizer};
use bigbatch_engine::train::{self, RunOptions, Status};
use bigbatch_engine::workload;
use bigbatch_studies::diagnostics::{self, RunDiagnostics};
use bigbatch_studies::slurm::SlurmOptions;
use bigbatch_studies::study::{Study, describe_result};
use bigbatch_studies::{report, reproduce};
use bigbatch_workloads::bert_data;
use clap::ValueEnum;
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
        backend: BackendArg,
        /// Read MNIST/Fashion-MNIST IDX files from this directory instead of the embedded subset.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run directory (default: runs/<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Continue the run in --out from its newest checkpoint (written at every evaluation).
        #[arg(long, requires = "out")]
        resume: bool,
        /// Share each micro-batch across these device indices of the backend (`0,1,2,3`);
        /// the same as `--set train.devices=[0,1,2,3]`.
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<usize>>,
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
    /// List the registered workloads (`model: ResNet(..)`, `Bert(..)`, `Plugin(name: ..)`).
    Workloads,
    /// Train a WordPiece vocabulary on a corpus and write it as vocab.txt.
    BertVocab {
        /// `sotu` (the embedded corpus) or a file in BERT's format (one sentence per line, blank
        /// line between documents; `.gz` allowed).
        #[arg(long, default_value = "sotu")]
        corpus: String,
        /// Number of entries, special tokens included.
        #[arg(long, default_value_t = 8192)]
        size: usize,
        /// Minimum count of a merged pair.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make BERT pretraining shards from a corpus (google-research/bert create_pretraining_data).
    BertData {
        /// `sotu` (the embedded corpus) or a file in BERT's format.
        #[arg(long, default_value = "sotu")]
        corpus: String,
        /// `sotu` or `sotu-1k` (the embedded vocabularies, 8,192 and 1,024 entries) or a
        /// vocab.txt (e.g. the standard uncased BERT one).
        #[arg(long, default_value = "sotu")]
        vocab: String,
        /// Sequence length (phase 1: 128, phase 2: 512).
        #[arg(long, default_value_t = 128)]
        max_seq_length: usize,
        /// Masked positions per sequence (phase 1: 20, phase 2: 80).
        #[arg(long, default_value_t = 20)]
        max_predictions_per_seq: usize,
        #[arg(long, default_value_t = 0.15)]
        masked_lm_prob: f64,
        #[arg(long, default_value_t = 10)]
        dupe_factor: usize,
        #[arg(long, default_value_t = 0.1)]
        short_seq_prob: f64,
        #[arg(long)]
        do_whole_word_mask: bool,
        #[arg(long, default_value_t = 12345)]
        seed: u64,
        /// Whole documents held out for the evaluation split.
        #[arg(long, default_value_t = 5)]
        eval_documents: usize,
        /// Instances per shard file.
        #[arg(long, default_value_t = 65536)]
        per_shard: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Tuning studies: quasi-random search, reruns over seeds.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// Tables (markdown, CSV) and charts (SVG, PNG) of one or more studies: protocol, best points,
    /// statistics over seeds, schedules, accuracy over seeds, training curves.
    Report {
        /// Study files (their directories default to studies/<name>).
        #[arg(required = true)]
        studies: Vec<PathBuf>,
        /// Study directories, one per study file in the same order (default: studies/<name>).
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
        /// Output directory for report.md and report.csv.
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
    /// Run the paper's findings as studies (what is missing: resumable) and write the report
    /// with a verdict per finding (`docs/reproduction/`).
    Reproduce {
        /// The findings file.
        #[arg(long, default_value = "configs/studies/reproduction/findings.ron")]
        findings: PathBuf,
        /// Report folder; the studies' results go to its `studies/`.
        #[arg(long, default_value = "docs/reproduction")]
        out: PathBuf,
        /// Run only these findings (by name; repeatable); the report covers every finding.
        #[arg(long)]
        only: Vec<String>,
        /// Feasible quasi-random trials per tuned study (the same for every optimizer of a
        /// finding; 20 or more, as two stages of 10).
        #[arg(long, default_value_t = 20)]
        trials: u64,
        /// Fresh seeds per rerun of a best point (seeds from 1000 up that no trial used; more
        /// than before adds seeds), and runs per value of a swept hyperparameter.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Trials or seeds run at the same time (threads).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Write the report from the result files without running anything.
        #[arg(long)]
        report_only: bool,
        /// Also write the summary table into this markdown file, between its lines
        /// `<!-- reproduction summary: written by `bigbatch reproduce --summary-into` -->` and
        /// `<!-- end of the reproduction summary -->` (`cargo xtask reproduce`: the README).
        #[arg(long)]
        summary_into: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Draw the per-layer diagnostics of runs (their `diagnostics.jsonl`): heat maps (tensor x
    /// step) of the update-to-weight and trust ratios, the global gradient norm, and each quantity
    /// per kind of parameter (weights / biases / batch norm), the runs side by side.
    Diagnostics {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output directory for the charts (SVG and PNG) and diagnostics.md.
        #[arg(long, default_value = "diagnostics")]
        out: PathBuf,
    },
    /// Write a run directory's scalars (loss, learning rate, accuracies, diagnostics) as a
    /// TensorBoard event file (`tensorboard --logdir OUT`).
    Tensorboard {
        /// The run directory.
        run: PathBuf,
        /// Output directory for the event file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Feed a recorded trajectory (parameters, per-step gradients and learning rates) through an
    /// optimizer config and print every parameter after every step as JSON (docs/replay.md).
    Replay {
        /// RON files with an `optimizer` section (e.g. configs/optimizers/lamb.ron), composed in
        /// order; their other sections are ignored (the trace gives the learning rates).
        #[arg(long = "optimizer", required = true)]
        optimizers: Vec<PathBuf>,
        /// The trace (JSON, see docs/replay.md).
        #[arg(long)]
        trace: PathBuf,
        /// Override one field: `--set optimizer.default.weight_decay=0.01`.
        #[arg(long = "set")]
        sets: Vec<String>,
        /// Computation precision.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DTypeArg,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Write the JSON to this file (atomically) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct StudyArgs {
    /// The study file (RON).
    study: PathBuf,
    /// Study directory (default: studies/<study file name>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The directory holds trials of a changed study (search space, seed or base configs): move
    /// them aside to `superseded-*/` instead of refusing.
    #[arg(long)]
    force: bool,
}

impl StudyArgs {
    fn open(self) -> Result<Study> {
        Study::load_with(&self.study, self.dir, self.force)
    }
}

#[derive(Subcommand, Debug)]
enum StudyCommand {
    /// Run trials until N feasible ones finished (diverged ones are recorded and do not count).
    Run {
        #[command(flatten)]
        args: StudyArgs,
        #[arg(long)]
        trials: u64,
        /// Trials run at once (threads of this process).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Run exactly one trial (skipped if its result exists): what a Slurm array task calls.
    Trial {
        #[command(flatten)]
        args: StudyArgs,
        #[arg(long)]
        index: u64,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Share each micro-batch across these device indices (`0,1`).
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<usize>>,
    },
    /// Write an `sbatch --array` script that runs the study's missing trials through `study
    /// trial` (absolute quoted paths, logs appended across requeues, SIGTERM before the time
    /// limit checkpoints and requeues); `--submit` submits it and chains the rerun and report.
    Slurm {
        #[command(flatten)]
        args: StudyArgs,
        /// Trial indices 0 .. attempts-1, at most the study's max_attempts (default: its
        /// max_attempts); only indices without a result are submitted.
        #[arg(long)]
        attempts: Option<u64>,
        /// Extra `#SBATCH` lines (e.g. `--sbatch "--gres=gpu:1"`), repeatable.
        #[arg(long = "sbatch", allow_hyphen_values = true)]
        sbatch: Vec<String>,
        /// Path of the bigbatch binary on the cluster (default: this binary).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Script path (default: DIR/slurm.sh).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the script on standard output instead of writing it.
        #[arg(long, conflicts_with_all = ["out", "submit"])]
        print: bool,
        /// The backend every task trains on.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Device indices every task shares its batch across (`0,1`).
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<usize>>,
        /// Seconds before the time limit at which Slurm sends SIGTERM (the trial checkpoints
        /// and the task requeues).
        #[arg(long, default_value_t = 120)]
        signal_seconds: u64,
        /// Submit the script with sbatch (prints the job ids).
        #[arg(long)]
        submit: bool,
        /// After the array succeeds (`afterok`), rerun the best point over K fresh seeds.
        #[arg(long, requires = "submit")]
        then_rerun: Option<u64>,
        /// After the rerun (or the array) succeeds, write `bigbatch report` into DIR.
        #[arg(long, requires = "submit")]
        then_report: Option<PathBuf>,
    },
    /// Progress: finished, diverged, unfinished trials and the best so far.
    Status {
        #[command(flatten)]
        args: StudyArgs,
    },
    /// Rerun the best trial's point until it has K fresh seeds (from 1000 up, never a seed the
    /// search used; `--seeds 10` after `--seeds 5` adds five). Reruns of an earlier best point
    /// are moved aside to superseded-reruns/.
    Rerun {
        #[command(flatten)]
        args: StudyArgs,
        #[arg(long)]
        seeds: u64,
        /// Seeds run at the same time (threads of this process).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Share each micro-batch across these device indices (`0,1`).
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<usize>>,
    },
}

/// `--backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    /// burn's `flex` CPU backend (always compiled in).
    Cpu,
    /// WGPU (Vulkan/Metal/DX12; also Mesa's software Vulkan): cargo feature `wgpu`.
    Wgpu,
    /// CUDA: cargo feature `cuda` (its build needs LLVM: `cargo xtask setup-llvm` on Debian/Ubuntu).
    Cuda,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Wgpu => Backend::Wgpu,
            BackendArg::Cuda => Backend::Cuda,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DTypeArg {
    F32,
    F64,
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
            resume,
            devices,
        } => {
            registry::check()?;
            let mut config = RunConfig::compose(&configs, &sets)?;
            if let Some(dir) = data {
                config.data.source = DataSource::Idx(dir);
            }
            if let Some(devices) = devices {
                config.train.devices = Some(devices);
                config.validate().context("--devices")?;
            }
            let out_dir = out.unwrap_or_else(default_run_dir);
            let options = RunOptions {
                out_dir: out_dir.clone(),
                progress: !no_progress && std::io::stderr().is_terminal(),
                resume,
                restart_without_checkpoint: false,
            };
            let summary = train::run(&config, backend.into(), &options)?;
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
                Status::Interrupted => {
                    return Err(bigbatch_engine::interrupt::Interrupted {
                        what: format!(
                            "{}; continue with --resume --out {}",
                            summary.reason.as_deref().unwrap_or("stopped"),
                            out_dir.display()
                        ),
                    }
                    .into());
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
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match config
                .schedule
                .write_csv(steps.unwrap_or(config.train.steps), &mut out)
            {
                // `bigbatch schedule ... | head` closes the pipe: not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("writing the schedule"),
            }?;
            Ok(())
        }
        Command::Replay {
            optimizers,
            trace,
            sets,
            dtype,
            backend,
            out,
        } => {
            registry::check()?;
            let setup = compose_optimizer(&optimizers, &sets)?;
            let origin = trace.display().to_string();
            let text = std::fs::read_to_string(&trace)
                .with_context(|| format!("cannot read trace file {origin}"))?;
            let trace: Trace = parse_json(&text, &origin)?;
            trace.validate(&origin)?;
            let precision = match dtype {
                DTypeArg::F32 => Precision::F32,
                DTypeArg::F64 => Precision::F64,
            };
            let backend = Backend::from(backend);
            if precision == Precision::F64 && backend == Backend::Wgpu {
                bail!(
                    "--dtype f64: the wgpu backend computes in f32 only; use --backend cpu or cuda"
                );
            }
            let device = backend::plain_device(backend)?;
            let result = replay(&setup, &trace, precision, &device)?;
            let json = serde_json::to_string_pretty(&result)?;
            match out {
                Some(path) => write_atomic(&path, format!("{json}\n").as_bytes())?,
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Study { command } => {
            registry::check()?;
            study_command(command)
        }
        Command::Diagnostics { runs, out } => {
            let labels = run_labels(&runs);
            let loaded = runs
                .iter()
                .zip(&labels)
                .map(|(dir, label)| RunDiagnostics::read(dir, label))
                .collect::<Result<Vec<_>>>()?;
            let charts = diagnostics::plot(&loaded, &out, "")?;
            let mut md = String::from("# Per-layer diagnostics\n\n");
            for r in &loaded {
                md += &format!(
                    "- {}: `{}` ({} diagnosed steps)\n",
                    r.label,
                    r.dir.display(),
                    r.steps.len()
                );
            }
            md += "\nAt the first and the last diagnosed step of each run:\n\n";
            md += &diagnostics::summary_table(&loaded)?;
            write_atomic(&out.join("diagnostics.md"), md.as_bytes())?;
            println!("{md}");
            println!("written: {}", out.join("diagnostics.md").display());
            for c in charts {
                println!("written: {}", c.display());
            }
            Ok(())
        }
        Command::Tensorboard { run, out } => {
            let file = bigbatch_engine::tensorboard::export(&run, &out)?;
            println!(
                "written: {} (tensorboard --logdir {})",
                file.display(),
                out.display()
            );
            Ok(())
        }
        Command::Report { studies, dirs, out } => {
            if !dirs.is_empty() && dirs.len() != studies.len() {
                bail!(
                    "--dir: give one directory per study file ({} studies, {} directories)",
                    studies.len(),
                    dirs.len()
                );
            }
            let loaded = studies
                .iter()
                .enumerate()
                .map(|(i, p)| Study::load(p, dirs.get(i).cloned()))
                .collect::<Result<Vec<_>>>()?;
            let (md, charts) = report::write(&loaded, &out)?;
            println!("{md}");
            println!("written: {}/report.md, report.csv", out.display());
            for c in charts {
                println!("written: {}", c.display());
            }
            Ok(())
        }
        Command::Reproduce {
            findings,
            out,
            only,
            trials,
            seeds,
            workers,
            report_only,
            summary_into,
            backend,
        } => {
            registry::check()?;
            let budget = (!report_only).then_some(reproduce::Budget {
                trials,
                seeds,
                workers,
                looked_at: Vec::new(),
            });
            reproduce::reproduce(
                &findings,
                &out,
                &only,
                budget,
                backend.into(),
                summary_into.as_deref(),
            )
        }
        Command::BertVocab {
            corpus,
            size,
            min_frequency,
            out,
        } => bert_data::vocab(&corpus, size, min_frequency, &out),
        Command::BertData {
            corpus,
            vocab,
            max_seq_length,
            max_predictions_per_seq,
            masked_lm_prob,
            dupe_factor,
            short_seq_prob,
            do_whole_word_mask,
            seed,
            eval_documents,
            per_shard,
            out,
        } => {
            let creation = CreationConfig {
                max_seq_length,
                max_predictions_per_seq,
                masked_lm_prob,
                dupe_factor,
                short_seq_prob,
                do_whole_word_mask,
                seed,
            };
            bert_data::data(&corpus, &vocab, &creation, eval_documents, per_shard, &out)
        }
        Command::Workloads => {
            for p in workload::plugins()? {
                println!(
                    "{}\n    {}\n    config: {}\n",
                    p.name, p.description, p.config_doc
                );
            }
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

fn study_command(command: StudyCommand) -> Result<()> {
    match command {
        StudyCommand::Run {
            args,
            trials,
            workers,
            backend,
        } => {
            let study = args.open()?;
            study.run(trials, workers, backend.into())?;
            print_status(&study)
        }
        StudyCommand::Trial {
            args,
            index,
            backend,
            devices,
        } => {
            let mut study = args.open()?;
            study.devices = devices;
            match study.run_trial(index, backend.into()) {
                Ok(r) => {
                    println!("{}", describe_result(&r));
                    Ok(())
                }
                // A duplicate submission: another process runs this trial, which is fine.
                Err(e) => match e.downcast::<bigbatch_engine::run_dir::RunInUse>() {
                    Ok(in_use) => {
                        println!(
                            "trial {index}: running in another process ({}); skipped",
                            in_use.holder
                        );
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            }
        }
        StudyCommand::Slurm {
            args,
            attempts,
            sbatch,
            binary,
            out,
            print,
            backend,
            devices,
            signal_seconds,
            submit,
            then_rerun,
            then_report,
        } => {
            let study = args.open()?;
            let attempts = study.slurm_attempts(attempts)?;
            let indices = study.missing_indices(attempts)?;
            let options = SlurmOptions {
                backend: backend
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_else(|| "cpu".into()),
                devices,
                sbatch,
                binary: match binary {
                    Some(b) => b,
                    None => std::env::current_exe()?,
                },
                signal_seconds,
            };
            if indices.is_empty() {
                println!(
                    "{}: every trial index below {attempts} has a result; {}",
                    study.path.display(),
                    if submit {
                        "chaining after none"
                    } else {
                        "nothing to submit"
                    }
                );
                if !submit {
                    return Ok(());
                }
            }
            std::fs::create_dir_all(&study.dir)
                .with_context(|| format!("cannot create {}", study.dir.display()))?;
            // Writes a script into the study directory and submits it after `after`.
            let submit_script = |name: &str, script: String, after: Option<&str>| {
                let path = study.dir.join(name);
                write_script(&path, &script)?;
                bigbatch_studies::slurm::submit(&path, after)
            };
            let mut after = None;
            if !indices.is_empty() {
                let script = study.slurm_script(&indices, &options)?;
                if print {
                    print!("{script}");
                    return Ok(());
                }
                let path = out.unwrap_or_else(|| study.dir.join("slurm.sh"));
                write_script(&path, &script)?;
                println!(
                    "wrote {} ({} trial indices: {})",
                    path.display(),
                    indices.len(),
                    bigbatch_studies::slurm::array_ranges(&indices)
                );
                if submit {
                    let id = bigbatch_studies::slurm::submit(&path, None)?;
                    println!("submitted the trials: job {id}");
                    after = Some(id);
                } else {
                    println!("submit with: sbatch {}", path.display());
                }
            }
            if let Some(seeds) = then_rerun {
                let script = study.slurm_rerun_script(seeds, &options)?;
                let id = submit_script("slurm-rerun.sh", script, after.as_deref())?;
                println!("submitted the rerun over {seeds} fresh seeds: job {id}");
                after = Some(id);
            }
            if let Some(report) = then_report {
                let script = study.slurm_report_script(&report, &options)?;
                let id = submit_script("slurm-report.sh", script, after.as_deref())?;
                println!("submitted the report: job {id}");
            }
            Ok(())
        }
        StudyCommand::Status { args } => print_status(&args.open()?),
        StudyCommand::Rerun {
            args,
            seeds,
            workers,
            backend,
            devices,
        } => {
            let mut study = args.open()?;
            study.devices = devices;
            study.rerun(seeds, workers, backend.into())?;
            let stats = study.rerun_stats()?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }
    }
}

/// Writes a script: atomically to a regular file (or a new path), directly through anything else
/// (a link such as `/dev/stdout`, a device, a pipe), which must not be replaced by a file.
fn write_script(path: &std::path::Path, script: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            std::fs::write(path, script).with_context(|| format!("cannot write {}", path.display()))
        }
        _ => write_atomic(path, script.as_bytes()),
    }
}

fn print_status(study: &Study) -> Result<()> {
    print!("{}", study.status_text()?);
    Ok(())
}

fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("run-{secs}"))
}

/// Labels for run directories: their names, with the parent's name where two share a name.
fn run_labels(runs: &[PathBuf]) -> Vec<String> {
    let base = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let names: Vec<String> = runs.iter().map(base).collect();
    runs.iter()
        .zip(&names)
        .map(|(p, n)| {
            if names.iter().filter(|m| *m == n).count() > 1 {
                let parent = p.parent().and_then(|q| q.file_name());
                match parent {
                    Some(q) => format!("{}/{n}", q.to_string_lossy()),
                    None => p.display().to_string(),
                }
            } else {
                n.clone()
            }
        })
        .collect()
}

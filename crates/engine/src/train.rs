//! One training run: config -> model + parameter groups -> optimizer -> train loop (batch split
//! into micro-batches and devices: [`crate::step`]) -> metrics.
//!
//! The run directory receives `config.ron` (the resolved config), `metrics.jsonl` (one JSON
//! object per line: the parameter groups, then per step `loss` and `lr`, and at each evaluation
//! `val_accuracy` and `train_accuracy`), `diagnostics.jsonl` (per-tensor norms, trust ratios and
//! effective learning rates of the steps `train.diagnostics_every` selects; one line per step) and
//! `summary.json` (written atomically at the end); with `train.tensorboard`, the same scalars go
//! to TensorBoard event files as they are recorded. A
//! non-finite loss ends the run with status `diverged`, the step and the reason recorded.
//!
//! At every evaluation the run also writes a checkpoint: `checkpoint-NNNNNNNN/` (the model as a
//! burnpack file, the optimizer state, the step) and then, atomically, `checkpoint.json` naming it,
//! so a crash never leaves a half-written checkpoint in use. [`RunOptions::resume`] continues from
//! the newest checkpoint: model, optimizer state and data order are restored (the sampler is
//! replayed to the step), metrics after that step are dropped, and the run goes on exactly as if
//! it had never stopped (a test checks bit-identical results).

use crate::backend::{self, Backend};
use crate::records::Records;
pub use crate::run::{Run, RunOptions, RunSummary, Status};
use crate::run_config::{RunConfig, check_resume_config};
use crate::run_dir::{
    RunLock, SoFar, check_fresh_start, clear_run, load_model, read_pointer, restore,
    save_checkpoint,
};
use crate::step::{self, BatchSplit};
use crate::workload::{self, Trainable, Workload};
use anyhow::{Context, Result, bail};
use bigbatch_core::ModelOptimizer;
use bigbatch_core::config::{to_ron, write_atomic};
use bigbatch_core::params::{ParamInfo, describe};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Trains the model the config describes on `backend` (devices: `train.devices`) and records
/// everything under `options.out_dir`. The one place that picks the workload.
pub fn run(config: &RunConfig, backend: Backend, options: &RunOptions) -> Result<RunSummary> {
    let devices = backend::devices(backend, config.train.devices.as_deref())?;
    let split = BatchSplit::new(
        config.train.batch_size,
        config.train.micro_batch_size(),
        devices,
    )?;
    let names = match &config.train.devices {
        Some(indices) => indices.iter().map(|i| format!("{backend:?}:{i}")).collect(),
        None => vec![format!("{backend:?}")],
    };
    let out = &options.out_dir;
    let _lock = RunLock::acquire(out)?;
    let mut checkpoint = None;
    if options.resume {
        checkpoint = read_pointer(out)?;
        if checkpoint.is_none() && options.restart_without_checkpoint {
            clear_run(out)?;
        }
    }
    match &checkpoint {
        Some(_) => check_resume_config(out, config)?,
        None => check_fresh_start(out, options.resume)?,
    }
    write_atomic(&out.join("config.ron"), to_ron(config)?.as_bytes())?;
    if let Some(warning) = config.schedule_warning() {
        eprintln!("warning: {warning}");
    }
    let run = Run {
        optimizer: &config.optimizer,
        schedule: &config.schedule,
        train: &config.train,
        split,
        names,
        options,
        checkpoint,
        parallel_optimizer: backend::parallel_optimizer_steps(backend),
        cpu_simd: backend::run_vector_instructions(backend),
    };
    let (name, section, prefix) = config.model.workload()?;
    let plugin = workload::find(name).context("model")?;
    let workload = (plugin.build)(&section, &config.workload_context(prefix))?;
    workload.train(&run)
}

impl<W: Workload> Trainable for W {
    fn train(self: Box<Self>, run: &Run) -> Result<RunSummary> {
        train_loop(*self, run)
    }
}

/// The process-wide lock around the devices' random generators (burn's are global): held from
/// seeding to the last draw, so that concurrent runs (study workers, tests) cannot interleave.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The seed of the random draws (dropout) of the part of step `step` that starts at example
/// `first`: a function of (seed, step, first) only, so a resumed run draws what an uninterrupted
/// one does (SplitMix64 finaliser over the combined words).
fn part_seed(seed: u64, step: u64, first: usize) -> u64 {
    let mut z = seed
        ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (first as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The model of `workload`, initialised from `seed` on the CPU ([`backend::init_device`]) and
/// moved to `device` (the same weights for a seed on every backend), with its trainable
/// parameters.
pub fn init_model<W: Workload>(
    workload: &W,
    seed: u64,
    device: &Device,
) -> Result<(W::Model, Vec<ParamInfo>)> {
    let host = backend::init_device();
    let (model, params) = {
        // burn initialises parameters lazily; `describe` reads every one, which materialises them
        // inside the lock.
        let _guard = rng_lock();
        host.seed(seed);
        let model = workload.init(&host)?;
        let params = describe(&model);
        (model, params)
    };
    let model = if *device == host {
        model
    } else {
        model.fork(device)
    };
    Ok((model, params))
}

/// The generic training loop: config -> model + parameter groups -> optimizer -> steps ->
/// metrics, evaluations and checkpoints.
pub fn train_loop<W: Workload>(mut workload: W, run: &Run) -> Result<RunSummary> {
    let (options, split) = (run.options, &run.split);
    let device = split.main_device();
    let started = std::time::Instant::now();
    let out = &options.out_dir;
    let (mut model, params) = init_model(&workload, run.train.seed, device)?;
    let mut optimizer =
        ModelOptimizer::new(run.optimizer, params)?.with_parallel_steps(run.parallel_optimizer);
    let mut start = 0;
    // Wall seconds of the run before this process (up to the checkpoint it resumes from);
    // `None` when that checkpoint did not record them, and then neither do later ones.
    let mut seconds_before = Some(0.0);
    let mut so_far = SoFar::default();
    let t = run.train;
    let mut setup_line = json!({
        "batch_size": t.batch_size,
        "micro_batch_size": split.micro_batch_size,
        "devices": run.names,
    });
    if let Some(simd) = &run.cpu_simd {
        setup_line["cpu_simd"] = json!(simd);
    }
    let tensorboard = t.tensorboard.as_deref();
    let mut records = match &run.checkpoint {
        Some(pointer) => {
            let restored = restore(out, pointer, model, &mut optimizer, device)?;
            model = restored.model;
            start = restored.step;
            seconds_before = restored.seconds;
            let (mut r, kept) = Records::resume(out, start, tensorboard)?;
            so_far = kept;
            let mut line = json!({"resumed_at": start, "setup": setup_line});
            if let Some(seconds) = seconds_before {
                // The run's seconds before this process (`run_dir::run_seconds`).
                line["seconds_before"] = json!(seconds);
            }
            if let (Some(before), Some(now)) = (&restored.cpu_simd, &run.cpu_simd)
                && before != now
            {
                // Sums group otherwise from here: the run goes on, but not bit for bit as an
                // uninterrupted run on either machine would.
                eprintln!(
                    "warning: the checkpoint was written on a CPU with {before} vector \
                     instructions, this one has {now}: the run continues, but its numbers from \
                     step {start} on are not those of an uninterrupted run on either machine"
                );
                line["cpu_simd_before"] = json!(before);
            }
            r.metric(&line)?;
            r
        }
        None => {
            if let Some(from) = &t.init_from {
                // Phase 2 of BERT pretraining: the weights of an earlier run, a fresh optimizer.
                let Some(pointer) = read_pointer(from)? else {
                    bail!(
                        "train.init_from: {} has no checkpoint.json (is it a run directory?)",
                        from.display()
                    );
                };
                model = load_model(model, &from.join(&pointer.newest.dir))
                    .context("train.init_from")?;
            }
            let mut r = Records::create(out, tensorboard)?;
            r.metric(&groups_line(&optimizer))?;
            r.metric(&json!({ "setup": setup_line }))?;
            r
        }
    };

    workload.skip(start)?;
    // The run's wall seconds so far, over every process (where the resumed checkpoint knew them).
    let seconds_so_far = move || seconds_before.map(|s| s + started.elapsed().as_secs_f64());
    // A checkpoint after `step` updates, with the run's seconds so far and the CPU's vector set.
    let checkpoint = |step, model: &_, optimizer: &_| {
        save_checkpoint(
            out,
            step,
            seconds_so_far(),
            run.cpu_simd.as_deref(),
            model,
            optimizer,
        )
    };
    let bar = progress_bar(t.steps, options.progress);
    bar.set_position(start);
    let mut summary = RunSummary {
        status: Status::Completed,
        steps: start,
        reason: None,
        final_val_accuracy: so_far.val,
        final_train_accuracy: so_far.train,
        final_loss: so_far.loss,
        seconds: 0.0,
        batch_size: t.batch_size,
        micro_batch_size: split.micro_batch_size,
        devices: run.names.clone(),
        examples_per_second: None,
        cpu_threads: Some(rayon::current_num_threads()),
        cpu_simd: run.cpu_simd.clone(),
    };
    let mut training_time = std::time::Duration::ZERO;
    for step in start..t.steps {
        let lr = run.schedule.lr(step);
        let mut checkpointed = false;
        let step_started = std::time::Instant::now();
        let batch = workload.next_batch()?;
        let random = workload.draws_randomness();
        let (updated, outcome) = step::guard_memory(split, || {
            step::step(
                model,
                &mut optimizer,
                split,
                lr,
                t.diagnoses(step),
                |m, part, d| {
                    // Random draws inside the forward pass (dropout) come from a generator seeded by
                    // (seed, step, part) under the process-wide lock, released before the backward
                    // pass.
                    let _guard = random.then(rng_lock);
                    if random {
                        d.seed(part_seed(t.seed, step, part.range.start));
                    }
                    let at = crate::workload::StepKey { seed: t.seed, step };
                    workload.part_loss_at(m, &batch, part.range.clone(), d, at)
                },
            )
        })?;
        model = updated;
        let loss_value = outcome.loss;
        if !loss_value.is_finite() {
            let reason = format!("loss is {loss_value} at step {step}");
            records.metric(&json!({"step": step, "lr": lr, "diverged": reason}))?;
            summary.status = Status::Diverged;
            summary.reason = Some(reason);
            break;
        }
        let elapsed = step_started.elapsed();
        training_time += elapsed;
        let rate = t.batch_size as f64 / elapsed.as_secs_f64();
        summary.steps = step + 1;
        summary.final_loss = Some(loss_value);
        records.metric(
            &json!({"step": step, "loss": loss_value, "lr": lr, "examples_per_second": rate}),
        )?;
        if let Some(d) = outcome.diagnostics {
            records.diagnostics(step, d)?;
        }
        bar.set_message(format!("loss {loss_value:.4} lr {lr:.4} {rate:.0} ex/s"));
        bar.inc(1);

        if (step + 1) % t.eval_every == 0 || step + 1 == t.steps {
            let e = workload.evaluate(&model, device)?;
            let mut line = json!({
                "step": step + 1,
                "val_accuracy": e.val_accuracy,
                "train_accuracy": e.train_accuracy,
            });
            let mut extra = String::new();
            for (name, value) in &e.extra {
                line[*name] = json!(value);
                extra.push_str(&format!("  {name} {value:.4}"));
            }
            records.metric(&line)?;
            let text = format!(
                "step {:>6}  loss {loss_value:.4}  val acc {:.2}%  train acc {:.2}%{extra}",
                step + 1,
                e.val_accuracy * 100.0,
                e.train_accuracy * 100.0
            );
            if bar.is_hidden() {
                eprintln!("{text}");
            } else {
                bar.println(text);
            }
            summary.final_val_accuracy = Some(e.val_accuracy);
            summary.final_train_accuracy = Some(e.train_accuracy);
            checkpoint(step + 1, &model, &optimizer)?;
            checkpointed = true;
        }
        if crate::interrupt::requested() && step + 1 < t.steps {
            // SIGTERM/SIGINT: keep everything up to this step and stop; `--resume` continues.
            if !checkpointed {
                checkpoint(step + 1, &model, &optimizer)?;
            }
            records.metric(&json!({"interrupted_at": step + 1}))?;
            summary.status = Status::Interrupted;
            summary.reason = Some(format!(
                "interrupted after step {} (checkpoint written; --resume continues)",
                step + 1
            ));
            break;
        }
    }
    bar.finish_and_clear();
    summary.seconds = seconds_so_far().unwrap_or(started.elapsed().as_secs_f64());
    let trained = summary.steps.saturating_sub(start);
    if trained > 0 && !training_time.is_zero() {
        summary.examples_per_second =
            Some((trained as f64 * t.batch_size as f64) / training_time.as_secs_f64());
    }
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

fn groups_line(optimizer: &ModelOptimizer) -> serde_json::Value {
    let groups: Vec<_> = optimizer
        .group_summary()
        .into_iter()
        .map(|(name, settings, tensors, scalars)| {
            json!({"group": name, "settings": settings, "tensors": tensors, "parameters": scalars})
        })
        .collect();
    json!({ "groups": groups })
}

fn progress_bar(steps: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    bar
}

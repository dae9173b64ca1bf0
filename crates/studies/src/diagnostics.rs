//! Per-layer diagnostics of runs, drawn: heat maps (layer x step) of the update-to-weight ratio and
//! the trust ratio, the global gradient norm over steps, and each quantity per kind of parameter
//! (weights / biases / batch norm) as lines, several runs side by side (`bigbatch diagnostics`,
//! and in `bigbatch report` for each study's best point).
//!
//! A kind's line at a step aggregates its tensors: norms as `sqrt(sum of squares)` over the
//! kind's tensors (the norm of the kind's parameters as one vector), the update ratio as the
//! kind's update norm over its weight norm, trust ratios and effective learning rates as the
//! median over the kind's tensors (those with a trust ratio, for trust ratios).

use crate::study::Study;
use anyhow::{Context, Result, bail};
use bigbatch_core::diagnostics::{StepDiagnostics, TensorDiagnostics};
use bigbatch_core::params::ParamKind;
use bigbatch_engine::run_dir::{DIAGNOSTICS_FILE, read_diagnostics};
use bigbatch_engine::tensorboard::kind_name;
use bigbatch_plots::{Grid, Series, heatmap, line_chart};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The diagnosed steps of one run, with the label it is drawn under.
pub struct RunDiagnostics {
    pub label: String,
    pub dir: PathBuf,
    pub steps: Vec<(u64, StepDiagnostics)>,
}

impl RunDiagnostics {
    /// Reads `dir/diagnostics.jsonl`; an error when the run has none.
    pub fn read(dir: &Path, label: &str) -> Result<Self> {
        let steps = read_diagnostics(dir)?;
        if steps.is_empty() {
            bail!(
                "{}: no {DIAGNOSTICS_FILE} (or an empty one): the run recorded no diagnostics (train.diagnostics_every)",
                dir.display()
            );
        }
        Ok(Self {
            label: label.to_string(),
            dir: dir.to_path_buf(),
            steps,
        })
    }
}

/// The quantities drawn per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    WeightNorm,
    GradNorm,
    UpdateNorm,
    UpdateRatio,
    TrustRatio,
    EffectiveLr,
}

impl Quantity {
    pub const ALL: [Quantity; 6] = [
        Quantity::UpdateRatio,
        Quantity::TrustRatio,
        Quantity::EffectiveLr,
        Quantity::GradNorm,
        Quantity::WeightNorm,
        Quantity::UpdateNorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quantity::WeightNorm => "weight_norm",
            Quantity::GradNorm => "grad_norm",
            Quantity::UpdateNorm => "update_norm",
            Quantity::UpdateRatio => "update_ratio",
            Quantity::TrustRatio => "trust_ratio",
            Quantity::EffectiveLr => "effective_lr",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Quantity::WeightNorm => "weight norm",
            Quantity::GradNorm => "gradient norm (summed batch gradient, before clipping)",
            Quantity::UpdateNorm => "update norm",
            Quantity::UpdateRatio => "update / weight norm",
            Quantity::TrustRatio => "trust ratio applied",
            Quantity::EffectiveLr => "effective learning rate (lr x lr_scale x trust ratio)",
        }
    }

    /// One tensor's value.
    pub fn of(self, t: &TensorDiagnostics) -> Option<f64> {
        match self {
            Quantity::WeightNorm => Some(t.weight_norm),
            Quantity::GradNorm => Some(t.grad_norm),
            Quantity::UpdateNorm => Some(t.update_norm),
            Quantity::UpdateRatio => t.update_ratio,
            Quantity::TrustRatio => t.trust_ratio,
            Quantity::EffectiveLr => Some(t.effective_lr),
        }
    }

    /// The aggregate over the tensors of one kind at one step (module docs); `None` when no
    /// tensor of the kind has the quantity.
    pub fn of_kind(self, d: &StepDiagnostics, kind: ParamKind) -> Option<f64> {
        let tensors: Vec<&TensorDiagnostics> =
            d.tensors.iter().filter(|t| t.kind == kind).collect();
        if tensors.is_empty() {
            return None;
        }
        let root_sum = |f: fn(&TensorDiagnostics) -> f64| {
            tensors.iter().map(|t| f(t) * f(t)).sum::<f64>().sqrt()
        };
        match self {
            Quantity::WeightNorm => Some(root_sum(|t| t.weight_norm)),
            Quantity::GradNorm => Some(root_sum(|t| t.grad_norm)),
            Quantity::UpdateNorm => Some(root_sum(|t| t.update_norm)),
            Quantity::UpdateRatio => {
                let w = root_sum(|t| t.weight_norm);
                (w > 0.0).then(|| root_sum(|t| t.update_norm) / w)
            }
            Quantity::TrustRatio | Quantity::EffectiveLr => {
                median(tensors.iter().filter_map(|t| self.of(t)).collect())
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

const KINDS: [ParamKind; 3] = [ParamKind::Weight, ParamKind::Bias, ParamKind::Norm];

/// A file-name-safe form of a label.
fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

/// The per-tensor grid of a quantity (rows: tensors in parameter order, columns: diagnosed steps).
pub fn grid(run: &RunDiagnostics, q: Quantity) -> Grid {
    let first = &run.steps[0].1;
    Grid {
        rows: first.tensors.iter().map(|t| t.path.clone()).collect(),
        columns: run.steps.iter().map(|(s, _)| *s as f64).collect(),
        values: (0..first.tensors.len())
            .map(|i| {
                run.steps
                    .iter()
                    .map(|(_, d)| d.tensors.get(i).and_then(|t| q.of(t)))
                    .collect()
            })
            .collect(),
    }
}

/// log10 of a positive value (the charts' scale for norms and ratios spanning decades).
fn log10(v: f64) -> Option<f64> {
    (v > 0.0 && v.is_finite()).then(|| v.log10())
}

/// Draws the diagnostics of `runs` into `out` (`prefix` starts every file name); returns the
/// files written (SVG and PNG of each chart).
pub fn plot(runs: &[RunDiagnostics], out: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for run in runs {
        for q in [Quantity::UpdateRatio, Quantity::TrustRatio] {
            let g = grid(run, q);
            if !g.values.iter().flatten().flatten().any(|v| *v > 0.0) {
                continue;
            }
            written.extend(heatmap(
                &out.join(format!("{prefix}{}-{}", file_safe(&run.label), q.name())),
                &format!("{}: {} per tensor", run.label, q.words()),
                "step",
                q.name(),
                &g,
            )?);
        }
    }
    let global: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            label: r.label.clone(),
            points: r
                .steps
                .iter()
                .filter_map(|(s, d)| log10(d.global_grad_norm).map(|y| (*s as f64, y)))
                .collect(),
        })
        .collect();
    if global.iter().any(|s| !s.points.is_empty()) {
        written.extend(line_chart(
            &out.join(format!("{prefix}global_grad_norm")),
            "Global gradient norm before clipping",
            "step",
            "log10 global gradient norm",
            &global,
        )?);
    }
    let clipping: Vec<Series> = runs
        .iter()
        .flat_map(|r| {
            let groups: Vec<String> = r.steps[0]
                .1
                .clipping
                .iter()
                .map(|c| c.group.clone())
                .collect();
            groups.into_iter().map(move |g| Series {
                label: format!("{}: {g}", r.label),
                points: r
                    .steps
                    .iter()
                    .filter_map(|(s, d)| {
                        d.clipping
                            .iter()
                            .find(|c| c.group == g)
                            .map(|c| (*s as f64, c.factor))
                    })
                    .collect(),
            })
        })
        .collect();
    if !clipping.is_empty() {
        written.extend(line_chart(
            &out.join(format!("{prefix}clip_factor")),
            "Global-norm clipping factor (1: not clipped)",
            "step",
            "clipping factor",
            &clipping,
        )?);
    }
    for q in Quantity::ALL {
        let series: Vec<Series> = runs
            .iter()
            .flat_map(|r| {
                KINDS.iter().map(move |&k| Series {
                    label: format!("{}: {}", r.label, kind_name(k)),
                    points: r
                        .steps
                        .iter()
                        .filter_map(|(s, d)| {
                            q.of_kind(d, k).and_then(log10).map(|y| (*s as f64, y))
                        })
                        .collect(),
                })
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        written.extend(line_chart(
            &out.join(format!("{prefix}by_kind-{}", q.name())),
            &format!("{} by kind of parameter", q.words()),
            "step",
            &format!("log10 {}", q.name()),
            &series,
        )?);
    }
    Ok(written)
}

/// A Markdown table of each run's kinds at its first and last diagnosed steps: update ratio,
/// trust ratio and effective learning rate (medians; "none" where no tensor of the kind has a
/// trust ratio) and gradient norm.
pub fn summary_table(runs: &[RunDiagnostics]) -> Result<String> {
    let mut md = String::from(
        "| run | kind | step | update / weight | trust ratio (median) | effective lr (median) | gradient norm |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    let show = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.3e}"));
    for r in runs {
        let (first, last) = (
            r.steps.first().expect("read() refuses runs without steps"),
            r.steps.last().expect("read() refuses runs without steps"),
        );
        let steps = if first.0 == last.0 {
            vec![first]
        } else {
            vec![first, last]
        };
        for k in KINDS {
            for (step, d) in &steps {
                if !d.tensors.iter().any(|t| t.kind == k) {
                    continue;
                }
                writeln!(
                    md,
                    "| {} | {} | {step} | {} | {} | {} | {} |",
                    r.label,
                    kind_name(k),
                    show(Quantity::UpdateRatio.of_kind(d, k)),
                    show(Quantity::TrustRatio.of_kind(d, k)),
                    show(Quantity::EffectiveLr.of_kind(d, k)),
                    show(Quantity::GradNorm.of_kind(d, k)),
                )?;
            }
        }
    }
    Ok(md)
}

/// The run of a study's best point that has diagnostics: of its fresh reruns, the one with the
/// most diagnosed steps (a rerun resumed under an older bigbatch has them only from its resume;
/// the lowest seed among equals), or else the best trial itself. `None` when none has any.
pub fn best_point_run(study: &Study, label: &str) -> Result<Option<RunDiagnostics>> {
    let Some(best) = study.best()? else {
        return Ok(None);
    };
    // Complete lines are counted, not parsed (a torn last line has no newline): only the chosen
    // run is read.
    let mut chosen: Option<(usize, PathBuf)> = None;
    for &seed in study.fresh_reruns()?.keys() {
        let dir = study.rerun_dir(seed);
        let path = dir.join(DIAGNOSTICS_FILE);
        if !path.exists() {
            continue;
        }
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let lines = text.iter().filter(|&&b| b == b'\n').count();
        if chosen.as_ref().is_none_or(|(n, _)| lines > *n) {
            chosen = Some((lines, dir));
        }
    }
    let trial = study.trial_run_dir(best.index);
    let dir = match chosen {
        Some((_, dir)) => dir,
        None if trial.join(DIAGNOSTICS_FILE).exists() => trial,
        None => return Ok(None),
    };
    RunDiagnostics::read(&dir, label).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bigbatch_core::diagnostics::TensorDiagnostics;

    fn tensor(kind: ParamKind, w: f64, u: f64, trust: Option<f64>) -> TensorDiagnostics {
        TensorDiagnostics {
            path: format!("{kind:?}"),
            group: "default".into(),
            kind,
            weight_norm: w,
            grad_norm: 1.0,
            update_norm: u,
            update_ratio: Some(u / w),
            trust_ratio: trust,
            effective_lr: 0.1 * trust.unwrap_or(1.0),
        }
    }

    /// Two weights with norms 3 and 4 and updates 0 and 0.5: the kind's weight norm is 5, its
    /// update ratio 0.5 / 5 = 0.1; trust ratios 2, 4 and (for the bias) none: median 3.
    #[test]
    fn kinds_aggregate_as_documented() {
        let d = StepDiagnostics {
            lr: 0.1,
            global_grad_norm: 3f64.sqrt(),
            clipping: vec![],
            tensors: vec![
                tensor(ParamKind::Weight, 3.0, 0.0, Some(2.0)),
                tensor(ParamKind::Weight, 4.0, 0.5, Some(4.0)),
                tensor(ParamKind::Bias, 1.0, 0.25, None),
            ],
        };
        let w = ParamKind::Weight;
        assert_eq!(Quantity::WeightNorm.of_kind(&d, w), Some(5.0));
        assert_eq!(Quantity::UpdateRatio.of_kind(&d, w), Some(0.1));
        assert_eq!(Quantity::TrustRatio.of_kind(&d, w), Some(3.0));
        assert_eq!(Quantity::TrustRatio.of_kind(&d, ParamKind::Bias), None);
        assert_eq!(Quantity::GradNorm.of_kind(&d, w), Some(2f64.sqrt()));
        assert_eq!(Quantity::UpdateRatio.of_kind(&d, ParamKind::Norm), None);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
    }
}

//! Trajectory replay: feed recorded parameters, gradients and learning rates through an optimizer
//! configuration and report every parameter after every step, so that any other framework's
//! optimizer can be compared with ours number by number. The trace format is documented in
//! `docs/replay.md`.

use crate::groups::OptimizerSetup;
use crate::optimizer::ModelOptimizer;
use crate::params::{ParamInfo, ParamKind, ParamSlot};
use anyhow::{Result, anyhow, bail};
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A recorded trajectory: initial parameters, then one learning rate and gradient set per step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub params: Vec<TraceParam>,
    pub steps: Vec<TraceStep>,
}

/// A named tensor with its initial value (flat, row-major).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceParam {
    pub name: String,
    /// `Weight`, `Bias` or `Norm`: what group selectors match on `kinds`.
    pub kind: ParamKind,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// One update: the learning rate (before each group's `lr_scale`) and a gradient per tensor name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceStep {
    pub lr: f64,
    pub grads: BTreeMap<String, Vec<f64>>,
}

/// The floating-point type of the replay computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

/// What `bigbatch replay` prints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReplayOutput {
    pub dtype: Precision,
    /// The group each tensor was assigned to.
    pub groups: BTreeMap<String, String>,
    pub steps: Vec<ReplayStep>,
}

/// The state after one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReplayStep {
    /// 1-based.
    pub step: u64,
    pub lr: f64,
    /// Every tensor after this step (flat, row-major).
    pub params: BTreeMap<String, Vec<f64>>,
    /// The layer-wise trust ratio applied to each tensor whose group applies one.
    pub trust_ratios: BTreeMap<String, f64>,
}

/// Parses JSON into `T`; errors read `origin:line:column: message (at path)`.
pub fn parse_json<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!(" (at `{path}`)")
        };
        anyhow!("{origin}:{}:{}: {inner}{at}", inner.line(), inner.column())
    })?;
    de.end()
        .map_err(|e| anyhow!("{origin}: trailing characters after the JSON value: {e}"))?;
    Ok(value)
}

impl Trace {
    /// The tensors as the optimizer sees them (name as path, kind, shape).
    pub fn param_infos(&self) -> Vec<ParamInfo> {
        self.params
            .iter()
            .map(|p| ParamInfo {
                path: p.name.clone(),
                kind: p.kind,
                shape: p.shape.clone(),
            })
            .collect()
    }

    /// Checks names, shapes and gradients; errors name `origin` and the offending field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        if self.params.is_empty() {
            bail!("{origin}: params: expected at least one tensor");
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.params.iter().enumerate() {
            if p.name.is_empty() {
                bail!("{origin}: params[{i}].name: expected a non-empty name");
            }
            if !names.insert(p.name.as_str()) {
                bail!("{origin}: params[{i}].name: `{}` appears twice", p.name);
            }
            let numel: usize = p.shape.iter().product();
            if p.shape.is_empty() || numel == 0 {
                bail!(
                    "{origin}: params[{i}].shape: expected a non-empty shape with no zero dimension, got {:?}",
                    p.shape
                );
            }
            if p.values.len() != numel {
                bail!(
                    "{origin}: params[{i}].values: `{}` has shape {:?} ({numel} values), got {} values",
                    p.name,
                    p.shape,
                    p.values.len()
                );
            }
        }
        for (s, step) in self.steps.iter().enumerate() {
            if !step.lr.is_finite() {
                bail!(
                    "{origin}: steps[{s}].lr: expected a finite number, got {}",
                    step.lr
                );
            }
            for name in step.grads.keys() {
                if !names.contains(name.as_str()) {
                    bail!("{origin}: steps[{s}].grads.{name}: no tensor of that name in params");
                }
            }
            for p in &self.params {
                let numel: usize = p.shape.iter().product();
                match step.grads.get(&p.name) {
                    None => bail!(
                        "{origin}: steps[{s}].grads: missing the gradient of `{}`",
                        p.name
                    ),
                    Some(g) if g.len() != numel => bail!(
                        "{origin}: steps[{s}].grads.{}: expected {numel} values (shape {:?}), got {}",
                        p.name,
                        p.shape,
                        g.len()
                    ),
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

fn flat(values: &[f64], precision: Precision, device: &Device) -> Tensor<1> {
    let data = TensorData::new(values.to_vec(), [values.len()]);
    Tensor::from_data(data, (device, precision.dtype()))
}

fn read(x: &Tensor<1>) -> Vec<f64> {
    x.clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 data after conversion")
}

/// Runs `trace` (already validated) through the optimizer `setup`, with parameters assigned to
/// groups by name and kind exactly as in training.
pub fn replay(
    setup: &OptimizerSetup,
    trace: &Trace,
    precision: Precision,
    device: &Device,
) -> Result<ReplayOutput> {
    let mut optimizer = ModelOptimizer::new(setup, trace.param_infos())?;
    let groups = trace
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), optimizer.group_of(i).to_string()))
        .collect();
    let mut values: Vec<Tensor<1>> = trace
        .params
        .iter()
        .map(|p| flat(&p.values, precision, device))
        .collect();
    let mut steps = Vec::with_capacity(trace.steps.len());
    for (s, step) in trace.steps.iter().enumerate() {
        let slots = trace
            .params
            .iter()
            .zip(values)
            .map(|(p, value)| ParamSlot {
                value,
                grad: flat(&step.grads[&p.name], precision, device),
            })
            .collect();
        let (new, ratios) = optimizer.step_with_trust_ratios(step.lr, slots);
        let mut params = BTreeMap::new();
        let mut trust_ratios = BTreeMap::new();
        for ((p, value), ratio) in trace.params.iter().zip(&new).zip(&ratios) {
            params.insert(p.name.clone(), read(value));
            if let Some(r) = ratio {
                trust_ratios.insert(p.name.clone(), read(r)[0]);
            }
        }
        steps.push(ReplayStep {
            step: s as u64 + 1,
            lr: step.lr,
            params,
            trust_ratios,
        });
        values = new;
    }
    Ok(ReplayOutput {
        dtype: precision,
        groups,
        steps,
    })
}

/// Checks a replay against a reference trajectory (the `*.expected.json` format of
/// `tests/reference/`): the same group assignment, the same steps, the same tensors reporting a
/// trust ratio, and `|got - want| <= tol * max(1, |want|)` for every value. Returns the largest
/// `|got - want| / max(1, |want|)`; an error names the case, step and value.
pub fn check_against_reference(
    case: &str,
    got: &ReplayOutput,
    want: &serde_json::Value,
    tol: f64,
) -> Result<f64> {
    let groups: BTreeMap<String, String> = serde_json::from_value(want["groups"].clone())
        .map_err(|e| anyhow::anyhow!("{case}: reference groups: {e}"))?;
    if got.groups != groups {
        bail!(
            "{case}: group assignment {:?}, reference {groups:?}",
            got.groups
        );
    }
    let Some(want_steps) = want["steps"].as_array() else {
        bail!("{case}: reference has no steps array");
    };
    if got.steps.len() != want_steps.len() {
        bail!(
            "{case}: {} steps, reference {}",
            got.steps.len(),
            want_steps.len()
        );
    }
    let mut worst = 0.0f64;
    let mut close = |what: &dyn Fn() -> String, g: f64, w: Option<f64>| -> Result<()> {
        let Some(w) = w else {
            bail!("{case}: {}: reference value is not a number", what());
        };
        let dev = (g - w).abs() / w.abs().max(1.0);
        if dev.is_nan() || dev > tol {
            bail!(
                "{case}: {}: got {g}, reference {w} (tolerance {tol})",
                what()
            );
        }
        worst = worst.max(dev);
        Ok(())
    };
    for (s, w) in got.steps.iter().zip(want_steps) {
        let Some(params) = w["params"].as_object() else {
            bail!("{case}: step {}: reference has no params", s.step);
        };
        for (name, values) in params {
            let Some(g) = s.params.get(name) else {
                bail!("{case}: step {}: no tensor {name}", s.step);
            };
            let values = values.as_array().map(Vec::as_slice).unwrap_or_default();
            if values.len() != g.len() {
                bail!(
                    "{case}: step {} {name}: {} values, reference {}",
                    s.step,
                    g.len(),
                    values.len()
                );
            }
            for (i, v) in values.iter().enumerate() {
                close(&|| format!("step {} {name}[{i}]", s.step), g[i], v.as_f64())?;
            }
        }
        let ratios = w["trust_ratios"].as_object().cloned().unwrap_or_default();
        if !s.trust_ratios.keys().eq(ratios.keys()) {
            bail!(
                "{case}: step {}: tensors with a trust ratio {:?}, reference {:?}",
                s.step,
                s.trust_ratios.keys().collect::<Vec<_>>(),
                ratios.keys().collect::<Vec<_>>()
            );
        }
        for (name, r) in &ratios {
            close(
                &|| format!("step {} trust ratio of {name}", s.step),
                s.trust_ratios[name],
                r.as_f64(),
            )?;
        }
    }
    Ok(worst)
}

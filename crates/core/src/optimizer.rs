//! One optimizer step over all parameters of a model.
//!
//! Each parameter group gets its own [`TensorOptimizer`], built by a registered plugin from the
//! group's settings. [`ModelOptimizer::step`] first computes the global quantities some optimizers
//! need (the global gradient norm for clipping), then updates every tensor.

use crate::diagnostics::{
    GroupClip, StepDiagnostics, TensorDiagnostics, clip_factor, squared_norms,
};
use crate::groups::{Assignment, GroupSettings, OptimizerSetup};
use crate::params::{ParamInfo, ParamSlot};
pub use crate::plugin::{GroupContext, StepContext, TensorOptimizer};
use crate::registry::{self, GroupSetting};
pub use crate::state::State;
use crate::transforms;
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// The saved state of a [`ModelOptimizer`]: the update count and every parameter's state tensors,
/// by parameter path. Serialised as MessagePack ([`OptimizerState::to_bytes`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub steps_done: u64,
    pub params: Vec<ParamState>,
}

/// One parameter's optimizer state (empty before its first update).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ParamState {
    pub path: String,
    pub group: String,
    pub tensors: Vec<TensorData>,
}

impl OptimizerState {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self).context("encoding the optimizer state")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        rmp_serde::from_slice(bytes).context("decoding the optimizer state (MessagePack)")
    }
}

/// The optimizer of a whole model: groups, their optimizers, per-parameter state.
pub struct ModelOptimizer {
    params: Vec<ParamInfo>,
    assignment: Assignment,
    optimizers: Vec<Box<dyn TensorOptimizer>>,
    states: Vec<State>,
    steps_done: u64,
    needs_global_norm: bool,
    parallel: bool,
}

impl ModelOptimizer {
    /// Assigns `params` to groups and builds each group's optimizer from the registry.
    pub fn new(setup: &OptimizerSetup, params: Vec<ParamInfo>) -> Result<Self> {
        let assignment = setup.assign(&params)?;
        let mut optimizers = Vec::new();
        for (name, settings) in &assignment.groups {
            optimizers.push(build_group(name, settings)?);
        }
        let needs_global_norm = optimizers.iter().any(|o| o.needs_global_grad_norm());
        Ok(Self {
            states: vec![State::default(); params.len()],
            params,
            assignment,
            optimizers,
            steps_done: 0,
            needs_global_norm,
            parallel: false,
        })
    }

    /// Updates the tensors on several threads (rayon's pool) in [`ModelOptimizer::step`]; each
    /// tensor still gets exactly the operations it gets alone. For burn's CPU backend, whose
    /// element-wise operations run on one thread. Not for burn's fusion backends (WGPU, CUDA):
    /// there, a parameter's operations issued from a different thread at each step gave wrong
    /// results (the reference trajectories on WGPU).
    pub fn with_parallel_steps(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// Group name and settings for each group, and how many parameters (tensors, scalars) it has.
    pub fn group_summary(&self) -> Vec<(String, GroupSettings, usize, usize)> {
        let mut out: Vec<_> = self
            .assignment
            .groups
            .iter()
            .map(|(n, s)| (n.clone(), s.clone(), 0, 0))
            .collect();
        for (p, &g) in self.params.iter().zip(&self.assignment.group_of) {
            out[g].2 += 1;
            out[g].3 += p.numel();
        }
        out
    }

    /// The group name of each parameter.
    pub fn group_of(&self, param_index: usize) -> &str {
        &self.assignment.groups[self.assignment.group_of[param_index]].0
    }

    /// Number of updates applied so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Copies out the state (update count and every state tensor) for a checkpoint.
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            steps_done: self.steps_done,
            params: self
                .params
                .iter()
                .zip(&self.states)
                .enumerate()
                .map(|(i, (p, s))| ParamState {
                    path: p.path.clone(),
                    group: self.group_of(i).to_string(),
                    tensors: s.tensors().map(|t| t.clone().into_data()).collect(),
                })
                .collect(),
        }
    }

    /// Restores a state saved by [`ModelOptimizer::state`] onto `device`. The parameters must be
    /// the same (paths, shapes, order) and each must belong to a group whose optimizer keeps the
    /// same number of state tensors; anything else is an error naming the parameter.
    pub fn load_state(&mut self, saved: OptimizerState, device: &Device) -> Result<()> {
        if saved.params.len() != self.params.len() {
            bail!(
                "optimizer state has {} parameters, the model has {}",
                saved.params.len(),
                self.params.len()
            );
        }
        let mut states = Vec::with_capacity(saved.params.len());
        for (i, (p, s)) in self.params.iter().zip(saved.params).enumerate() {
            if p.path != s.path {
                bail!(
                    "optimizer state parameter {i} is `{}`, the model's is `{}`",
                    s.path,
                    p.path
                );
            }
            let slots = self.optimizers[self.assignment.group_of[i]].state_slots();
            if !s.tensors.is_empty() && s.tensors.len() != slots {
                bail!(
                    "optimizer state of `{}` has {} tensors, its group `{}` keeps {slots}",
                    p.path,
                    s.tensors.len(),
                    self.group_of(i)
                );
            }
            let mut tensors = Vec::with_capacity(s.tensors.len());
            for data in s.tensors {
                if data.shape().as_slice() != [p.numel()] {
                    bail!(
                        "optimizer state of `{}` has shape {:?}, expected [{}] (the flattened parameter)",
                        p.path,
                        data.shape().as_slice(),
                        p.numel()
                    );
                }
                let dtype = data.dtype();
                tensors.push(Tensor::<1>::from_data(data, (device, dtype)));
            }
            states.push(State::new(tensors));
        }
        self.states = states;
        self.steps_done = saved.steps_done;
        Ok(())
    }

    /// One update of every parameter with the schedule's learning rate `lr`. `slots` are in
    /// [`ModelOptimizer::params`] order; returns the new values in the same order.
    pub fn step(&mut self, lr: f64, slots: Vec<ParamSlot>) -> Vec<Tensor<1>> {
        self.step_inner(lr, slots, false, false).0
    }

    /// [`ModelOptimizer::step`], also returning the trust ratio each tensor's optimizer applied
    /// (`None` where its group applies none).
    pub fn step_with_trust_ratios(
        &mut self,
        lr: f64,
        slots: Vec<ParamSlot>,
    ) -> (Vec<Tensor<1>>, Vec<Option<Tensor<1>>>) {
        let (values, ratios, _) = self.step_inner(lr, slots, true, false);
        (values, ratios)
    }

    /// [`ModelOptimizer::step`], also returning what it did to every tensor
    /// ([`crate::diagnostics`]): the norms are reduced on the device and read back together with
    /// the trust ratios in one transfer. Works for any [`TensorOptimizer`]; a plugin that reports
    /// its trust ratio ([`StepContext::report_trust_ratio`]) has it recorded.
    pub fn step_with_diagnostics(
        &mut self,
        lr: f64,
        slots: Vec<ParamSlot>,
    ) -> (Vec<Tensor<1>>, StepDiagnostics) {
        let (values, ratios, norms) = self.step_inner(lr, slots, true, true);
        // One device tensor: three squared norms per parameter, then every applied trust ratio.
        let has_ratio: Vec<bool> = ratios.iter().map(Option::is_some).collect();
        let parts: Vec<Tensor<1>> = norms
            .into_iter()
            .map(|n| n.expect("norms are computed when diagnosing"))
            .chain(ratios.into_iter().flatten())
            .collect();
        let host: Vec<f64> = Tensor::cat(parts, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("a float tensor converted to f32 reads back as f32")
            .into_iter()
            .map(f64::from)
            .collect();
        let mut trust = host[3 * self.params.len()..].iter().copied();
        let mut tensors = Vec::with_capacity(self.params.len());
        let mut sum_g2 = 0.0;
        for (i, p) in self.params.iter().enumerate() {
            let (w, g, u) = (
                host[3 * i].sqrt(),
                host[3 * i + 1].sqrt(),
                host[3 * i + 2].sqrt(),
            );
            sum_g2 += host[3 * i + 1];
            let trust_ratio = if has_ratio[i] { trust.next() } else { None };
            let settings = &self.assignment.groups[self.assignment.group_of[i]].1;
            tensors.push(TensorDiagnostics {
                path: p.path.clone(),
                group: self.group_of(i).to_string(),
                kind: p.kind,
                weight_norm: w,
                grad_norm: g,
                update_norm: u,
                update_ratio: (w > 0.0).then(|| u / w),
                trust_ratio,
                effective_lr: lr * settings.lr_scale * trust_ratio.unwrap_or(1.0),
            });
        }
        let global_grad_norm = sum_g2.sqrt();
        let clipping = self
            .assignment
            .groups
            .iter()
            .zip(&self.optimizers)
            .filter_map(|((name, _), o)| {
                o.max_grad_norm().map(|max| GroupClip {
                    group: name.clone(),
                    max_norm: max,
                    factor: clip_factor(global_grad_norm, max),
                })
            })
            .collect();
        let diagnostics = StepDiagnostics {
            lr,
            global_grad_norm,
            clipping,
            tensors,
        };
        (values, diagnostics)
    }

    /// The new values, the trust ratios applied (when `report`) and each tensor's squared norms
    /// ([`crate::diagnostics::squared_norms`], when `diagnose`).
    #[allow(clippy::type_complexity)]
    fn step_inner(
        &mut self,
        lr: f64,
        slots: Vec<ParamSlot>,
        report: bool,
        diagnose: bool,
    ) -> (
        Vec<Tensor<1>>,
        Vec<Option<Tensor<1>>>,
        Vec<Option<Tensor<1>>>,
    ) {
        assert_eq!(
            slots.len(),
            self.params.len(),
            "one slot per parameter of the optimizer"
        );
        self.steps_done += 1;
        let global = if self.needs_global_norm {
            transforms::global_norm(slots.iter().map(|s| &s.grad))
        } else {
            None
        };
        let steps_done = self.steps_done;
        let (optimizers, assignment) = (&self.optimizers, &self.assignment);
        let step_one = |(i, (slot, state)): (usize, (ParamSlot, &mut State))| {
            let g = assignment.group_of[i];
            let optimizer = &optimizers[g];
            if state.is_empty() {
                *state = State::new(
                    (0..optimizer.state_slots())
                        .map(|_| slot.value.zeros_like())
                        .collect(),
                );
            }
            let probe = RefCell::new(None);
            let ctx = StepContext {
                lr: lr * assignment.groups[g].1.lr_scale,
                step: steps_done,
                global_grad_norm: global.as_ref(),
                trust_ratio_out: report.then_some(&probe),
            };
            let before = diagnose.then(|| (slot.value.clone(), slot.grad.clone()));
            let value = optimizer.step(&ctx, slot.value, slot.grad, state);
            let norms = before.map(|(w, g)| squared_norms(&w, &g, &value));
            (value, probe.into_inner(), norms)
        };
        let updated: Vec<(Tensor<1>, Option<Tensor<1>>, Option<Tensor<1>>)> = if self.parallel {
            slots
                .into_par_iter()
                .zip(self.states.par_iter_mut())
                .enumerate()
                .map(step_one)
                .collect()
        } else {
            slots
                .into_iter()
                .zip(self.states.iter_mut())
                .enumerate()
                .map(step_one)
                .collect()
        };
        let mut values = Vec::with_capacity(updated.len());
        let mut ratios = Vec::with_capacity(updated.len());
        let mut norms = Vec::with_capacity(updated.len());
        for (v, r, n) in updated {
            values.push(v);
            ratios.push(r);
            norms.push(n);
        }
        (values, ratios, norms)
    }
}

fn build_group(name: &str, settings: &GroupSettings) -> Result<Box<dyn TensorOptimizer>> {
    let prefix = if name == crate::groups::DEFAULT_GROUP {
        "optimizer.default".to_string()
    } else {
        format!("optimizer.groups.{name}")
    };
    let plugin = registry::find(&settings.optimizer.name)
        .with_context(|| format!("{prefix}.optimizer.name"))?;
    let set = [
        (GroupSetting::WeightDecay, settings.weight_decay != 0.0),
        (GroupSetting::DecayMode, settings.decay_mode.is_some()),
        (GroupSetting::TrustRatio, settings.trust_ratio.is_some()),
    ];
    for (setting, _) in set.iter().filter(|(_, is_set)| *is_set) {
        if !plugin.honours.contains(setting) {
            let honoured: Vec<_> = plugin.honours.iter().map(|s| s.field()).collect();
            bail!(
                "{prefix}.{}: the group `{name}` sets it, but its optimizer `{}` does not honour it \
                 (it honours: {}); remove the setting or choose an optimizer that honours it",
                setting.field(),
                plugin.name,
                if honoured.is_empty() {
                    "none of weight_decay, decay_mode, trust_ratio".to_string()
                } else {
                    honoured.join(", ")
                }
            );
        }
    }
    let ctx = GroupContext {
        prefix: prefix.clone(),
        weight_decay: settings.weight_decay,
        decay_mode: settings.decay_mode,
        trust_ratio: settings.trust_ratio,
    };
    (plugin.build)(&settings.optimizer.config, &ctx)
}

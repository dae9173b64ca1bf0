//! One optimizer step over all parameters of a model.
//!
//! Each parameter group gets its own [`TensorOptimizer`], built by a registered plugin from the
//! group's settings. [`ModelOptimizer::step`] first computes the global quantities some optimizers
//! need (the global gradient norm for clipping), then updates every tensor.

use crate::groups::{Assignment, DecayMode, GroupSettings, OptimizerSetup};
use crate::params::{ParamInfo, ParamSlot};
use crate::registry;
use crate::transforms::{self, AdamHyper};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// What a plugin knows about the group it optimizes.
#[derive(Clone, Debug)]
pub struct GroupContext {
    /// Config path of the group (`optimizer.default` or `optimizer.groups.NAME`), for errors.
    pub prefix: String,
    pub weight_decay: f64,
    /// `None`: the optimizer's own convention.
    pub decay_mode: Option<DecayMode>,
    /// `None`: the optimizer's own default.
    pub trust_ratio: Option<bool>,
}

impl GroupContext {
    /// The config path of a plugin field: `PREFIX.optimizer.config.NAME`.
    pub fn field(&self, name: &str) -> String {
        format!("{}.optimizer.config.{name}", self.prefix)
    }

    /// Errors unless `0 <= value < 1` (momentum, Adam betas).
    pub fn check_unit_interval(&self, name: &str, value: f64) -> Result<()> {
        if !(0.0..1.0).contains(&value) {
            bail!(
                "{}: expected a value in [0, 1), got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Errors unless `value` is finite and `>= 0` (epsilons).
    pub fn check_non_negative(&self, name: &str, value: f64) -> Result<()> {
        if !(value >= 0.0 && value.is_finite()) {
            bail!(
                "{}: expected a finite non-negative number, got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Errors unless `value` is finite and `> 0`.
    pub fn check_positive(&self, name: &str, value: f64) -> Result<()> {
        if !(value > 0.0 && value.is_finite()) {
            bail!(
                "{}: expected a positive number, got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Checks Adam hyperparameters (betas in `[0, 1)`, epsilons non-negative).
    pub fn check_adam(&self, h: &AdamHyper) -> Result<()> {
        self.check_unit_interval("beta1", h.beta1)?;
        self.check_unit_interval("beta2", h.beta2)?;
        self.check_non_negative("eps", h.eps)?;
        self.check_non_negative("eps_root", h.eps_root)
    }
}

/// Per-step inputs shared by all tensors.
pub struct StepContext<'a> {
    /// The schedule's learning rate times the group's `lr_scale`.
    pub lr: f64,
    /// The 1-based index of this update (for bias correction).
    pub step: u64,
    /// `sqrt(sum over all parameters of ||g||^2)`, present when any group asked for it.
    pub global_grad_norm: Option<&'a Tensor<1>>,
    /// Where an optimizer reports the layer-wise trust ratio it applied (for `bigbatch replay`);
    /// `None` when nobody is listening.
    pub trust_ratio_out: Option<&'a RefCell<Option<Tensor<1>>>>,
}

impl StepContext<'_> {
    /// A context with no global gradient norm and no trust-ratio listener.
    pub fn new(lr: f64, step: u64) -> Self {
        StepContext {
            lr,
            step,
            global_grad_norm: None,
            trust_ratio_out: None,
        }
    }

    /// Reports the one-element trust ratio applied to this tensor (cheap: a handle clone).
    pub fn report_trust_ratio(&self, ratio: &Tensor<1>) {
        if let Some(out) = self.trust_ratio_out {
            *out.borrow_mut() = Some(ratio.clone());
        }
    }
}

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

/// One parameter's optimizer state: [`TensorOptimizer::state_slots`] tensors shaped like the
/// flat parameter. A transform moves a slot's tensor out ([`State::take`]) and puts its new
/// value back ([`State::put`]) instead of cloning it: burn's CPU backend writes an element-wise
/// result into an operand's buffer when the operand's tensor is its only reference.
#[derive(Clone, Debug, Default)]
pub struct State(Vec<Option<Tensor<1>>>);

impl State {
    pub fn new(tensors: Vec<Tensor<1>>) -> Self {
        Self(tensors.into_iter().map(Some).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves slot `slot`'s tensor out until [`State::put`] returns it.
    ///
    /// # Panics
    /// If the slot does not exist or was taken and not put back (a bug in the optimizer).
    pub fn take(&mut self, slot: usize) -> Tensor<1> {
        self.0[slot]
            .take()
            .unwrap_or_else(|| panic!("optimizer state slot {slot} taken twice"))
    }

    pub fn put(&mut self, slot: usize, tensor: Tensor<1>) {
        self.0[slot] = Some(tensor);
    }

    /// Slot `slot`'s tensor.
    ///
    /// # Panics
    /// If the slot does not exist or is taken.
    pub fn get(&self, slot: usize) -> &Tensor<1> {
        self.0[slot]
            .as_ref()
            .expect("optimizer state read while a slot is taken")
    }

    /// The tensors, in slot order.
    ///
    /// # Panics
    /// If a slot is still taken (only possible inside a step).
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor<1>> {
        (0..self.len()).map(|slot| self.get(slot))
    }
}

/// A per-tensor optimizer: the composition of transforms one group applies.
pub trait TensorOptimizer: Send + Sync {
    /// How many state tensors (each shaped like the parameter, zero at start) it keeps.
    fn state_slots(&self) -> usize;
    /// Whether [`StepContext::global_grad_norm`] is needed.
    fn needs_global_grad_norm(&self) -> bool {
        false
    }
    /// Returns the new parameter value and updates `state` in place.
    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        state: &mut State,
    ) -> Tensor<1>;
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
        self.step_inner(lr, slots, None)
    }

    /// [`ModelOptimizer::step`], also returning the trust ratio each tensor's optimizer applied
    /// (`None` where its group applies none).
    pub fn step_with_trust_ratios(
        &mut self,
        lr: f64,
        slots: Vec<ParamSlot>,
    ) -> (Vec<Tensor<1>>, Vec<Option<Tensor<1>>>) {
        let mut ratios = Vec::with_capacity(slots.len());
        let values = self.step_inner(lr, slots, Some(&mut ratios));
        (values, ratios)
    }

    fn step_inner(
        &mut self,
        lr: f64,
        slots: Vec<ParamSlot>,
        ratios: Option<&mut Vec<Option<Tensor<1>>>>,
    ) -> Vec<Tensor<1>> {
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
        let report = ratios.is_some();
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
            let value = optimizer.step(&ctx, slot.value, slot.grad, state);
            (value, probe.into_inner())
        };
        let updated: Vec<(Tensor<1>, Option<Tensor<1>>)> = if self.parallel {
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
        let (values, applied): (Vec<_>, Vec<_>) = updated.into_iter().unzip();
        if let Some(r) = ratios {
            r.extend(applied);
        }
        values
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
    let ctx = GroupContext {
        prefix: prefix.clone(),
        weight_decay: settings.weight_decay,
        decay_mode: settings.decay_mode,
        trust_ratio: settings.trust_ratio,
    };
    (plugin.build)(&settings.optimizer.config, &ctx)
}

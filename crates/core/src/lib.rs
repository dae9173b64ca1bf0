//! bigbatch core: everything an optimizer comparison needs that is not a concrete optimizer,
//! model or dataset.
//!
//! The data path: a RON config ([`config`]) names parameter groups ([`groups`]), a learning-rate
//! schedule ([`schedule`]) and, per group, an optimizer from the [`registry`]. The
//! [`optimizer::ModelOptimizer`] then performs one step over all parameters of a model, whose
//! parameters and gradients are gathered by [`params`]. Optimizer plugins are short compositions of
//! the [`transforms`].

pub mod config;
pub mod groups;
pub mod optimizer;
pub mod params;
pub mod registry;
pub mod replay;
pub mod schedule;
pub mod study;
pub mod testing;
pub mod transforms;

pub use groups::{DecayMode, GroupSettings, OptimizerChoice, OptimizerSetup, ParamKind, Selector};
pub use optimizer::{GroupContext, ModelOptimizer, State, StepContext, TensorOptimizer};
pub use params::{ParamInfo, ParamSlot};
pub use registry::OptimizerPlugin;
pub use schedule::Schedule;

/// Re-exported so that plugin crates can call `bigbatch_core::inventory::submit!` without naming
/// the `inventory` crate themselves.
pub use inventory;

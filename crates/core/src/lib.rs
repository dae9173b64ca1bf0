//! bigbatch core: everything an optimizer comparison needs that is not a concrete optimizer,
//! model or dataset.
//!
//! The data path: a RON config ([`config`]) names parameter groups ([`groups`]), a learning-rate
//! schedule ([`schedule`]) and, per group, an optimizer from the [`registry`]. The
//! [`optimizer::ModelOptimizer`] then performs one step over all parameters of a model, whose
//! parameters and gradients are gathered by [`params`]. Optimizer plugins are short compositions of
//! the [`transforms`].
//!
//! Must not depend on any other bigbatch crate (optimizers, models, data, the engine), nor name a
//! backend.

pub mod config;
pub mod diagnostics;
pub mod groups;
pub mod optimizer;
pub mod params;
pub mod plugin;
pub mod registry;
pub mod replay;
pub mod schedule;
pub mod state;
pub mod study;
pub mod testing;
pub mod transforms;

pub use groups::{DecayMode, GroupSettings, OptimizerChoice, OptimizerSetup, Selector};
pub use optimizer::ModelOptimizer;
pub use params::{ParamInfo, ParamKind, ParamSlot};
pub use plugin::{GroupContext, StepContext, TensorOptimizer};
pub use registry::OptimizerPlugin;
pub use schedule::Schedule;
pub use state::State;

/// Re-exported so that plugin crates can call `bigbatch_core::inventory::submit!` without naming
/// the `inventory` crate themselves.
pub use inventory;

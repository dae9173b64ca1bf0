//! Models for bigbatch: the ResNet v1.5 family ([`resnet`]) with ghost batch norm ([`ghost_bn`])
//! and 1x1 convolutions as matrix products ([`conv`]), and BERT for pretraining ([`bert`]).
//!
//! Code never names a backend: modules are built on a [`burn::tensor::Device`].
//!
//! Must not depend on optimizers, data, the engine or studies.

pub mod bert;
pub mod conv;
pub mod dropout;
pub mod ghost_bn;
pub mod resnet;

pub use bert::{
    Bert, BertBatch, BertConfig, BertForPretraining, Gelu, LossDenominators, PretrainingOutput,
};
pub use ghost_bn::GhostBatchNorm;
pub use resnet::{ResNet, ResNetConfig};

/// Tests that draw from the device's global random generator (initialisation, `random`) hold
/// this lock, so that a seeded test is not disturbed by another running in parallel.
#[cfg(test)]
pub(crate) fn rng_guard() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

//! Models for bigbatch: the ResNet v1.5 family ([`resnet`]) with ghost batch norm ([`ghost_bn`]).
//!
//! Code never names a backend: modules are built on a [`burn::tensor::Device`].

pub mod ghost_bn;
pub mod resnet;

pub use ghost_bn::GhostBatchNorm;
pub use resnet::{ResNet, ResNetConfig};

//! Models for bigbatch: the ResNet v1.5 family ([`resnet`]).
//!
//! Code never names a backend: modules are built on a [`burn::tensor::Device`].

pub mod resnet;

pub use resnet::{ResNet, ResNetConfig};

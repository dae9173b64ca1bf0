//! Helpers for optimizer plugin tests: flat tensors on the CPU backend, and back to numbers.

use burn::tensor::{Device, Tensor};

/// A flat f32 tensor on the `flex` CPU device.
pub fn tensor(values: &[f32]) -> Tensor<1> {
    Tensor::from_floats(values, &Device::flex())
}

/// The values of a flat tensor, widened to f64 for comparisons with hand-derived references.
pub fn values(x: &Tensor<1>) -> Vec<f64> {
    x.clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("an f32 tensor")
        .into_iter()
        .map(f64::from)
        .collect()
}

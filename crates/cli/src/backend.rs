//! Backend choice. Code elsewhere never names a backend: it receives a [`Device`].

use anyhow::Result;
use burn::tensor::Device;
use clap::ValueEnum;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's `flex` CPU backend (always compiled in).
    Cpu,
    /// WGPU (Vulkan/Metal/DX12; also Mesa's software Vulkan): cargo feature `wgpu`.
    Wgpu,
    /// CUDA: cargo feature `cuda` (its build downloads an LLVM bundle: needs network access).
    Cuda,
}

/// The training device (with autodiff) for a backend; a backend that was not compiled in is an
/// error that says how to build it.
pub fn device(backend: Backend) -> Result<Device> {
    Ok(plain_device(backend)?.autodiff())
}

/// The device without autodiff (for work that takes no gradients, such as `bigbatch replay`).
pub fn plain_device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Wgpu => wgpu(),
        Backend::Cuda => cuda(),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device> {
    anyhow::bail!(
        "--backend wgpu: this bigbatch was built without the `wgpu` feature; rebuild with `cargo build --release -p bigbatch-cli --features wgpu`"
    )
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    anyhow::bail!(
        "--backend cuda: this bigbatch was built without the `cuda` feature; rebuild with `cargo build --release -p bigbatch-cli --features cuda` (the CUDA build downloads an LLVM bundle and needs network access)"
    )
}

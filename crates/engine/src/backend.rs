//! Backend choice. Code elsewhere never names a backend: it receives a [`Device`].

use anyhow::{Result, bail};
use burn::tensor::Device;

/// A burn backend, as `--backend` names it (`cpu`, `wgpu`, `cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's `flex` CPU backend (always compiled in).
    Cpu,
    /// WGPU (Vulkan/Metal/DX12; also Mesa's software Vulkan): cargo feature `wgpu`.
    Wgpu,
    /// CUDA: cargo feature `cuda` (its build needs LLVM: `cargo xtask setup-llvm` on Debian/Ubuntu).
    Cuda,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            other => bail!("unknown backend `{other}`: expected cpu, wgpu or cuda"),
        }
    }
}

impl Backend {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

/// Whether optimizer steps update tensors on several threads (`ModelOptimizer::with_parallel_steps`):
/// on the CPU backend only.
pub fn parallel_optimizer_steps(backend: Backend) -> bool {
    backend == Backend::Cpu
}

/// The widest vector instruction set burn's CPU kernels use on this machine, as
/// `macerator::Arch::detect` (burn-flex's reductions and element-wise kernels) picks it:
/// `x86-64-v4 (AVX-512)`, `x86-64-v3 (AVX2)`, `x86-64-v2 (SSE4.2)`, `x86-64 (SSE2)`, or the
/// architecture's name elsewhere. A vector of 16 lanes sums in another order than one of 8, so a
/// CPU run's last bits (and after hundreds of steps its accuracies) depend on it; runs repeat
/// exactly on machines with the same set. Recorded in `summary.json` (`cpu_simd`).
pub fn cpu_vector_instructions() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v2 =
            has!("sse3") && has!("ssse3") && has!("sse4.1") && has!("sse4.2") && has!("popcnt");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("fma")
            && has!("lzcnt")
            && has!("f16c");
        let v4 = v3
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl");
        let name = match (v4, v3, v2) {
            (true, _, _) => "x86-64-v4 (AVX-512)",
            (_, true, _) => "x86-64-v3 (AVX2)",
            (_, _, true) => "x86-64-v2 (SSE4.2)",
            _ => "x86-64 (SSE2)",
        };
        name.to_string()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// [`cpu_vector_instructions`] for a run on the CPU backend; `None` on the others.
pub fn run_vector_instructions(backend: Backend) -> Option<String> {
    (backend == Backend::Cpu).then(cpu_vector_instructions)
}

/// The training device (with autodiff) for a backend; a backend that was not compiled in is an
/// error that says how to build it.
pub fn device(backend: Backend) -> Result<Device> {
    Ok(plain_device(backend)?.autodiff())
}

/// The training devices (with autodiff) for `indices` of a backend (`None`: its default device).
/// Every device is opened and tried once here, so that a device that is not there is an error
/// naming it rather than a panic inside the backend later.
pub fn devices(backend: Backend, indices: Option<&[usize]>) -> Result<Vec<Device>> {
    let Some(indices) = indices else {
        let device = device(backend)?;
        probe(&device, &format!("the default {backend:?} device"))?;
        return Ok(vec![device]);
    };
    for (i, a) in indices.iter().enumerate() {
        if indices[..i].contains(a) {
            bail!("train.devices: device {a} is listed twice in {indices:?}");
        }
    }
    let mut out = Vec::with_capacity(indices.len());
    for &index in indices {
        let device = match backend {
            Backend::Cpu if index == 0 => Device::flex(),
            Backend::Cpu => bail!(
                "train.devices {indices:?}: the cpu backend (burn's flex) has one device, 0; \
                 data parallelism needs a GPU backend (--backend cuda or wgpu)"
            ),
            Backend::Wgpu => wgpu_index(index)?,
            Backend::Cuda => cuda_index(index)?,
        };
        probe(&device, &format!("{backend:?} device {index}"))?;
        out.push(device.autodiff());
    }
    Ok(out)
}

/// Creates a tiny tensor on `device` and reads it back; a backend panic (no adapter, no driver,
/// index out of range) becomes an error naming the device and what the backend said. Backends
/// may panic on their own device threads and report something unrelated here, so the first panic
/// of any thread during the probe is the cause given.
fn probe(device: &Device, what: &str) -> Result<()> {
    use std::sync::{Arc, Mutex};
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    let seen = first.clone();
    std::panic::set_hook(Box::new(move |info| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get_or_insert_with(|| panic_message(info.payload()));
    }));
    let tried = std::panic::catch_unwind(|| {
        burn::tensor::Tensor::<1>::zeros([1], device)
            .try_into_data()
            .map_err(|e| format!("{e:?}"))
            .and_then(|d| d.try_to_vec::<f32>().map_err(|e| format!("{e:?}")))
            .map(|_| ())
    });
    std::panic::set_hook(hook);
    let cause = first.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (tried, cause) {
        (Ok(Ok(())), _) => Ok(()),
        (_, Some(cause)) => bail!("{what} is not available: {cause}"),
        (Ok(Err(e)), None) => bail!("{what} cannot be used: {e}"),
        (Err(panic), None) => bail!("{what} is not available: {}", panic_message(panic.as_ref())),
    }
}

/// The text of a caught panic (backends report device failures by panicking).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into())
}

/// Where models are initialised before they move to the training device: the CPU, seeded, so
/// that a seed means the same initial weights on every backend (each backend has its own random
/// generator).
pub fn init_device() -> Device {
    Device::flex().autodiff()
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

/// WGPU device `index`: the `index`-th discrete GPU.
#[cfg(feature = "wgpu")]
fn wgpu_index(index: usize) -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_index(_: usize) -> Result<Device> {
    wgpu()
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

#[cfg(feature = "cuda")]
fn cuda_index(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_index(_: usize) -> Result<Device> {
    cuda()
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    anyhow::bail!(
        "--backend cuda: this bigbatch was built without the `cuda` feature; rebuild with `cargo build --release -p bigbatch-cli --features cuda` (run `cargo xtask setup-llvm` first on Debian/Ubuntu, or let the build download its LLVM bundle)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_back() {
        for b in [Backend::Cpu, Backend::Wgpu, Backend::Cuda] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        let err = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("unknown backend `tpu`"), "{err}");
    }

    /// Against the kernel's own list of the CPU's features (`/proc/cpuinfo` names them as Linux
    /// does: `pni` is SSE3, `abm` covers LZCNT; the x86-64 levels are the psABI's).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn vector_instructions_agree_with_proc_cpuinfo() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags"))
            .unwrap()
            .trim_start_matches([' ', '\t', ':'])
            .split_whitespace()
            .collect();
        let all = |names: &[&str]| names.iter().all(|n| flags.contains(n));
        let v2 = all(&["pni", "ssse3", "sse4_1", "sse4_2", "popcnt"]);
        let v3 = v2 && all(&["avx", "avx2", "bmi1", "bmi2", "fma", "abm", "f16c"]);
        let v4 = v3 && all(&["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
        let expected = if v4 {
            "x86-64-v4 (AVX-512)"
        } else if v3 {
            "x86-64-v3 (AVX2)"
        } else if v2 {
            "x86-64-v2 (SSE4.2)"
        } else {
            "x86-64 (SSE2)"
        };
        assert_eq!(cpu_vector_instructions(), expected, "flags: {flags:?}");
    }
}

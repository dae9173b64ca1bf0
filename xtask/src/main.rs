//! Developer and user shortcuts. Everything here is reachable from the `bigbatch` CLI too.
//!
//! - `cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]`: composes
//!   `configs/models/<model>.ron` with `configs/optimizers/<optimizer>.ron` and trains (release
//!   build) into `runs/<model>-<optimizer>`.
//! - `cargo xtask reproduce [--only NAME] [--trials N] [--seeds K] [--report-only]`: runs the
//!   paper's findings as studies (resumable) and writes `docs/reproduction/` (`bigbatch reproduce`).
//! - `cargo xtask test [--no-wgpu]`: formatting, clippy (`-D warnings`) over all targets with all
//!   features (so the `cuda` backend is type-checked too), then all tests, the WGPU set included,
//!   on Mesa's software Vulkan where no GPU driver is installed (installed with apt-get when
//!   missing and it runs as root on Debian/Ubuntu): what CI runs. `--no-wgpu` leaves the WGPU
//!   set (and burn's WGPU stack) out of the test build.
//!
//! - `cargo xtask setup-llvm`: lets burn's CUDA backend build offline from Debian's LLVM 22.
//! - `cargo xtask gpu-check --backend cuda|wgpu [--tiny]`: builds and bundles in
//!   `target/gpu-check/` what a GPU machine runs (`run.sh`: `device-check`, xz-compressed, and the
//!   PyTorch twin).
//!
//! burn 0.22's CUDA backend depends on `tracel-llvm-bundler`, whose build script downloads an LLVM
//! bundle even for `cargo check` unless `<data-local dir>/tracel/tracel-llvm-23.1.0-4/` holds the
//! file `.tracel-llvm-installed`; it then links through `bin/llvm-config --link-static` there.
//! `setup-llvm` puts Debian's LLVM behind that name. Its documented docs.rs switch (`DOCS_RS`
//! set) skips the download without linking, which is what the clippy step uses.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn run(args: Vec<String>) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("train") => train(&args[1..]),
        Some("reproduce") => reproduce(&args[1..]),
        Some("setup-llvm") => setup_llvm(),
        Some("gpu-check") => gpu_check(&args[1..]),
        Some("test") => match args.get(1).map(String::as_str) {
            None => test(true),
            Some("--no-wgpu") => test(false),
            Some(other) => bail!("cargo xtask test: unknown option {other} (only --no-wgpu)"),
        },
        _ => bail!(
            "usage:\n  cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]\n  cargo xtask reproduce [--only NAME] [--trials N] [--seeds K] [--workers W] [--report-only]\n  cargo xtask setup-llvm\n  cargo xtask gpu-check --backend cuda|wgpu [--tiny]\n  cargo xtask test [--no-wgpu]"
        ),
    }
}

fn available(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    if p.extension()? != "ron" {
                        return None;
                    }
                    Some(p.file_stem()?.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(", ")
}

/// The optimizer file of a pairing: the model's own tuned preset
/// (`configs/optimizers/<model>/<optimizer>.ron`) where there is one, else the generic
/// `configs/optimizers/<optimizer>.ron`.
fn optimizer_file(model: &str, optimizer: &str) -> Result<PathBuf> {
    let tuned = root()
        .join("configs/optimizers")
        .join(model)
        .join(format!("{optimizer}.ron"));
    if tuned.is_file() {
        return Ok(tuned);
    }
    config_file("optimizers", optimizer)
}

fn config_file(kind: &str, name: &str) -> Result<PathBuf> {
    let dir = root().join("configs").join(kind);
    let path = dir.join(format!("{name}.ron"));
    if !path.is_file() {
        bail!(
            "no {} config `{name}` ({} does not exist); available: {}",
            kind.trim_end_matches('s'),
            path.display(),
            available(&dir)
        );
    }
    Ok(path)
}

fn train(args: &[String]) -> Result<()> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut positional = Vec::new();
    let mut features = Vec::new();
    let mut it = ours.iter();
    while let Some(a) = it.next() {
        if a == "--features" {
            features.push(it.next().context("--features needs a value")?.clone());
        } else {
            positional.push(a.clone());
        }
    }
    let [model, optimizer] = positional.as_slice() else {
        bail!(
            "usage: cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]"
        );
    };
    let model_file = config_file("models", model)?;
    let optimizer_file = optimizer_file(model, optimizer)?;
    let out = root().join("runs").join(format!("{model}-{optimizer}"));
    // A run directory is never reused: an earlier run of the same pair is kept beside it.
    if out.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = root()
            .join("runs")
            .join(format!("{model}-{optimizer}.previous-{stamp}"));
        std::fs::rename(&out, &kept)
            .with_context(|| format!("cannot move the earlier run {} aside", out.display()))?;
        eprintln!("xtask: the earlier run is kept in {}", kept.display());
    }
    let binary = release_binary(&features)?;
    eprintln!(
        "xtask: training {} + {} into {}",
        model_file.display(),
        optimizer_file.display(),
        out.display()
    );
    let mut cmd = Command::new(binary);
    cmd.current_dir(root());
    cmd.args(["train", "--config"])
        .arg(&model_file)
        .arg("--config")
        .arg(&optimizer_file)
        .arg("--out")
        .arg(&out)
        .args(passthrough);
    status(&mut cmd)
}

/// Builds the release binary `bigbatch` with cargo's own progress (a cold release build takes
/// about 7 minutes on 2 cores), so that what follows is never a silent wait; returns its path.
fn release_binary(features: &[String]) -> Result<PathBuf> {
    eprintln!(
        "xtask: building the release binary `bigbatch` (cold: about 7 minutes on 2 cores; then seconds)"
    );
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root())
        .args(["build", "--release", "-p", "bigbatch-cli"]);
    if !features.is_empty() {
        build.args(["--features", &features.join(",")]);
    }
    status(&mut build)?;
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_relative() => std::env::current_dir()?.join(dir),
        Some(dir) => dir,
        None => root().join("target"),
    };
    Ok(target.join("release/bigbatch"))
}

/// `cargo xtask reproduce [--only NAME] [--trials N] [--seeds K] [--workers W] [--report-only]`:
/// `bigbatch reproduce` from the workspace root with the release binary (the studies of
/// `configs/studies/reproduction/findings.ron`, then the report in `docs/reproduction/`, and its
/// summary table in the README's Results). With `--findings` or `--out` (another reproduction)
/// the README is left alone.
fn reproduce(args: &[String]) -> Result<()> {
    let binary = release_binary(&[])?;
    let mut cmd = Command::new(binary);
    cmd.current_dir(root()).arg("reproduce").args(args);
    let elsewhere = args.iter().any(|a| {
        ["--findings", "--out", "--summary-into"]
            .iter()
            .any(|flag| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if !elsewhere {
        cmd.args(["--summary-into", "README.md"]);
    }
    status(&mut cmd)
}

/// The folder `tracel-llvm-bundler` 23.1.0-4 looks in: `dirs::data_local_dir()` (on Linux
/// `$XDG_DATA_HOME` when absolute, else `$HOME/.local/share`) + `tracel/tracel-llvm-23.1.0-4`.
fn tracel_llvm_dir() -> Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    Ok(data.join("tracel/tracel-llvm-23.1.0-4"))
}

/// Debian's LLVM 22 (`llvm-22-dev`, static libraries with the NVPTX target) under the name
/// burn's CUDA build looks for. `llvm-config --system-libs` there names libz3 by its absolute
/// path, which the bundler would turn into `-llibz3`; the wrapper prints `-lz3` instead.
const LLVM_CONFIG_WRAPPER: &str = r#"#!/bin/sh
# Written by `cargo xtask setup-llvm`: Debian's LLVM 22 where tracel-llvm-bundler looks for its
# bundle. Forwards to the real llvm-config; rewrites absolute library paths in --system-libs
# (e.g. /usr/lib/x86_64-linux-gnu/libz3.so) to -l flags.
out=$(/usr/lib/llvm-22/bin/llvm-config "$@") || exit $?
case " $* " in
  *" --system-libs "*) out=$(printf '%s\n' "$out" | sed -E 's#(^| )/[^ ]*/lib([A-Za-z0-9_+-]+)\.so[.0-9]*#\1-l\2#g') ;;
esac
printf '%s\n' "$out"
"#;

/// Debian packages the offline CUDA build links against.
const LLVM_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libxml2-dev",
    "libz3-dev",
];

fn setup_llvm() -> Result<()> {
    let real = Path::new("/usr/lib/llvm-22/bin/llvm-config");
    if !real.is_file() {
        let has_apt = Path::new("/usr/bin/apt-get").is_file();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if has_apt && root {
            eprintln!("xtask: installing {} with apt-get", LLVM_PACKAGES.join(" "));
            status(Command::new("apt-get").arg("update"))?;
            status(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends"])
                    .args(LLVM_PACKAGES)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        } else if has_apt {
            bail!(
                "{} is missing: run `sudo apt-get install {}` (Debian 12 bookworm ships LLVM 22 in bookworm-security; Ubuntu: apt.llvm.org), then `cargo xtask setup-llvm` again",
                real.display(),
                LLVM_PACKAGES.join(" ")
            );
        } else {
            bail!(
                "{} is missing and this is not a Debian/Ubuntu machine. Either build with network access (burn's build downloads its own LLVM bundle into {}), or install LLVM 22 with its static libraries and write {}/bin/llvm-config forwarding to its llvm-config, plus an empty .tracel-llvm-installed file there",
                real.display(),
                tracel_llvm_dir()?.display(),
                tracel_llvm_dir()?.display()
            );
        }
    }
    let dir = tracel_llvm_dir()?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let wrapper = bin.join("llvm-config");
    std::fs::write(&wrapper, LLVM_CONFIG_WRAPPER)
        .with_context(|| format!("cannot write {}", wrapper.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let libs = Command::new(&wrapper)
        .args(["--link-static", "--system-libs"])
        .output()
        .with_context(|| format!("cannot run {}", wrapper.display()))?;
    if !libs.status.success() {
        bail!(
            "{} --link-static --system-libs failed: {}",
            wrapper.display(),
            String::from_utf8_lossy(&libs.stderr)
        );
    }
    let libs = String::from_utf8_lossy(&libs.stdout);
    if let Some(bad) = libs.split_whitespace().find(|t| t.contains('/')) {
        bail!(
            "{}: --system-libs still prints a path ({bad})",
            wrapper.display()
        );
    }
    std::fs::write(
        dir.join(".tracel-llvm-installed"),
        "debian llvm-22 via cargo xtask setup-llvm\n",
    )?;
    eprintln!(
        "xtask: {} now forwards to {} (system libraries: {}).\n\
         xtask: build the CUDA backend with `cargo build --release -p bigbatch-cli --features cuda`;\n\
         xtask: its kernels compile through LLVM's NVPTX target, so a GPU machine needs only the NVIDIA driver.",
        wrapper.display(),
        real.display(),
        libs.trim()
    );
    Ok(())
}

/// The script a GPU machine runs from the bundle folder (at most 5 minutes): the device check,
/// then the PyTorch twin of its ResNet-50 step, into `$OUT` (default `./out`).
const GPU_CHECK_SCRIPT: &str = r###"#!/bin/bash
# Written by `cargo xtask gpu-check`. Needs the GPU driver (and, for the PyTorch row, python3 with
# torch); no network, no Rust toolchain. Results: $OUT/device-check.md (default ./out).
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) > "$out/gpu.txt" 2>&1
# The binary travels xz-compressed (LLVM makes it large); unpacked outside $OUT.
bin=$(mktemp -d)/device-check
if command -v xz > /dev/null; then
  xz -dc "$here/device-check.xz" > "$bin"
else
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$here/device-check.xz" "$bin"
fi
chmod +x "$bin"
timeout 230 "$bin" --backend @BACKEND@ @TINY@ --root "$here" --out "$out/device-check.md" \
  > "$out/device-check.log" 2>&1
status=$?
[ $status -eq 124 ] && echo "**device-check stopped after 230 s**" >> "$out/device-check.md"
if [ $status -ne 0 ] && [ $status -ne 124 ] && [ $status -ne 1 ]; then
  { echo "**device-check could not run (exit $status)**:"; echo; tail -c 2000 "$out/device-check.log"; echo; } \
    >> "$out/device-check.md"
fi
{
  echo
  echo "## PyTorch eager, same machine, same run"
  echo
  echo "| measurement | time per step | rate |"
  echo "|---|---:|---:|"
  timeout 60 python3 "$here/torch_gpu.py" --device @TORCH_DEVICE@ @TINY@ 2> "$out/torch.log" \
    || echo "| PyTorch twin | - | failed or timed out (torch.log) |"
} >> "$out/device-check.md"
cat "$out/device-check.md"
exit $status
"###;

/// Libraries every Linux machine has; the bundle carries the other shared libraries the binary
/// needs (e.g. LLVM's libz3, libxml2, libzstd from Debian).
const SYSTEM_LIBS: &[&str] = &[
    "linux-vdso",
    "libc.so",
    "libm.so",
    "libdl.so",
    "librt.so",
    "libpthread.so",
    "ld-linux",
    "libgcc_s.so",
];

fn gpu_check(args: &[String]) -> Result<()> {
    let mut backend = None;
    let mut tiny = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => backend = it.next().cloned(),
            "--tiny" => tiny = true,
            other => bail!("cargo xtask gpu-check: unknown option {other}"),
        }
    }
    let backend = match backend.as_deref() {
        Some(b @ ("cuda" | "wgpu")) => b.to_string(),
        _ => bail!("usage: cargo xtask gpu-check --backend cuda|wgpu [--tiny]"),
    };
    if backend == "cuda" && !tracel_llvm_dir()?.join(".tracel-llvm-installed").exists() {
        eprintln!(
            "xtask: no LLVM for burn's CUDA build in {}: the build will try to download one (run `cargo xtask setup-llvm` to use Debian's instead)",
            tracel_llvm_dir()?.display()
        );
    }
    eprintln!(
        "xtask: building device-check with --features {backend} (release; cold: tens of minutes on 2 cores)"
    );
    status(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "bigbatch-benches",
        "--bin",
        "device-check",
        "--features",
        &backend,
    ]))?;
    let bundle = root().join("target/gpu-check");
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(bundle.join("lib"))?;
    let binary = bundle.join("device-check");
    std::fs::copy(root().join("target/release/device-check"), &binary)?;
    let _ = Command::new("strip").arg(&binary).status();
    // Compressed so that the bundle fits a transfer limit (a CUDA build is about 165 MB, 40 MB
    // as xz); ldd below still reads the uncompressed one.
    eprintln!("xtask: compressing the binary with xz (about 2 minutes)");
    let packed = std::fs::File::create(bundle.join("device-check.xz"))?;
    status(
        Command::new("xz")
            .args(["-T0", "-6", "-c"])
            .arg(&binary)
            .stdout(packed),
    )?;
    // Shared libraries beyond the C runtime travel with the binary.
    let ldd = Command::new("ldd")
        .arg(&binary)
        .output()
        .context("cannot run ldd")?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if SYSTEM_LIBS.iter().any(|s| name.starts_with(s)) {
            continue;
        }
        if let Some(path) = line
            .split("=>")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            && path.starts_with('/')
        {
            std::fs::copy(path, bundle.join("lib").join(name))
                .with_context(|| format!("cannot copy {path}"))?;
        }
    }
    std::fs::remove_file(&binary)?;
    for dir in [
        "configs/models",
        "configs/optimizers",
        "tests/reference/cases",
    ] {
        copy_dir(&root().join(dir), &bundle.join(dir))?;
    }
    std::fs::copy(
        root().join("tests/reference/trace.json"),
        bundle.join("tests/reference/trace.json"),
    )?;
    std::fs::copy(
        root().join("benches/torch_gpu.py"),
        bundle.join("torch_gpu.py"),
    )?;
    let script = GPU_CHECK_SCRIPT
        .replace("@BACKEND@", &backend)
        .replace("@TINY@", if tiny { "--tiny" } else { "" })
        .replace(
            "@TORCH_DEVICE@",
            if backend == "cuda" { "cuda" } else { "cpu" },
        );
    let run = bundle.join("run.sh");
    std::fs::write(&run, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
    let size = dir_size(&bundle)?;
    eprintln!(
        "xtask: {} is ready ({:.1} MiB): copy it to the GPU machine and run ./run.sh there (results in out/device-check.md)",
        bundle.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn test(wgpu: bool) -> Result<()> {
    let cargo = env!("CARGO");
    let clippy: &[&str] = &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ];
    // The tests include the WGPU set (tests/tests/support/wgpu.rs), run on whatever Vulkan
    // driver the machine has; Mesa's software one (lavapipe) is enough.
    // burn's WGPU stack is most of the cold test build: 18 minutes on 2 cores with Cargo.toml
    // compiling its once-per-kernel crates unoptimised and no debug info; with a cold autotune
    // cache the tests take 13 minutes (measured).
    let tests: &[&str] = if wgpu {
        &["test", "--workspace", "--features", "bigbatch-tests/wgpu"]
    } else {
        &["test", "--workspace"]
    };
    warn_if_disk_is_short();
    // The Vulkan driver first: a machine that cannot have one fails before the long builds.
    let xdg_runtime_dir = if wgpu { Some(ensure_vulkan()?) } else { None };
    eprintln!("xtask: cargo fmt --all --check");
    status(
        Command::new(cargo)
            .current_dir(root())
            .args(["fmt", "--all", "--check"]),
    )?;
    eprintln!("xtask: cargo {}", clippy.join(" "));
    status(
        Command::new(cargo)
            .current_dir(root())
            .args(clippy)
            .env("DOCS_RS", "1"),
    )?;
    let mut run = Command::new(cargo);
    run.current_dir(root()).args(tests);
    if let Some(dir) = xdg_runtime_dir {
        run.env("XDG_RUNTIME_DIR", dir);
    }
    // The real-Slurm test (tests/tests/support/slurm.rs) runs where Slurm is installed (here,
    // by apt-get where missing) and must not skip then; elsewhere it says it skipped.
    match ensure_slurm() {
        Ok(()) => {
            run.env("BIGBATCH_REQUIRE_SLURM", "1");
        }
        Err(e) => eprintln!("xtask: {e:#}; the real-Slurm test will say it skipped"),
    }
    // The TensorBoard test reads event files back with the `tensorboard` Python package (a venv
    // it makes under target/tmp/); where Python can make one, it must not skip.
    match ensure_python_venv() {
        Ok(()) => {
            run.env("BIGBATCH_REQUIRE_TENSORBOARD", "1");
        }
        Err(e) => eprintln!("xtask: {e:#}; the TensorBoard test will say it skipped"),
    }
    // The tests include the device check's dry run on the CPU at tiny sizes
    // (benches/device_check.rs, `dry_run_on_the_cpu`): every part of the script a GPU machine
    // runs executes, in the tests' build.
    eprintln!("xtask: cargo {}", tests.join(" "));
    status(&mut run)
}

/// Disk a cold `cargo xtask test` fills under `target/` (clippy's check artifacts and the tests'
/// build with the WGPU stack): 5.5 GiB measured on Linux; see [`warn_if_disk_is_short`].
const COLD_TEST_BUILD_GIB: u64 = 6;

/// Says before the long builds when the target directory's file system has less free space than
/// a cold test build fills, instead of a "No space left on device" from rustc half an hour in.
/// Only a warning: a warm target directory needs far less. Silent where `df` is unavailable.
fn warn_if_disk_is_short() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut dir = target.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
    let Ok(out) = Command::new("df").arg("-Pk").arg(dir).output() else {
        return;
    };
    // POSIX `df -P`: a header line, then "filesystem blocks used available capacity mount".
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(free_kib) = text
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|field| field.parse::<u64>().ok())
    else {
        return;
    };
    let free_gib = free_kib as f64 / (1024.0 * 1024.0);
    if free_gib < COLD_TEST_BUILD_GIB as f64 {
        eprintln!(
            "xtask: warning: {free_gib:.1} GiB free on the file system of {}; a cold `cargo xtask test` writes about {COLD_TEST_BUILD_GIB} GiB there (less when the target directory is warm)",
            target.display()
        );
    }
}

/// A Vulkan driver for the WGPU tests: present already, or Mesa's (software lavapipe included)
/// installed with apt-get when running as root on Debian/Ubuntu. Returns an `XDG_RUNTIME_DIR`
/// for the Vulkan loader (the caller's, or a private one under the target directory).
fn ensure_vulkan() -> Result<PathBuf> {
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_icd = || {
        icd_dirs
            .iter()
            .any(|d| std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()))
    };
    let has_loader = || {
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib",
            "/usr/lib64",
        ]
        .iter()
        .any(|d| Path::new(d).join("libvulkan.so.1").exists())
    };
    if !(has_icd() && has_loader()) {
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let apt = Path::new("/usr/bin/apt-get").exists();
        if !(root_user && apt) {
            bail!(
                "the WGPU tests need a Vulkan driver and loader; on Debian/Ubuntu run `apt-get install mesa-vulkan-drivers libvulkan1` as root (Mesa's software renderer is enough), elsewhere install your GPU's Vulkan driver"
            );
        }
        eprintln!(
            "xtask: installing Mesa's Vulkan drivers for the WGPU tests (apt-get install mesa-vulkan-drivers libvulkan1)"
        );
        status(Command::new("apt-get").args(["update", "-q"]))?;
        status(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "mesa-vulkan-drivers", "libvulkan1"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let dir = root().join("target/xdg-runtime");
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Installs Debian's Slurm (controller, node daemon, client, basic plugins) when missing, as
/// root with apt-get; the test starts its own daemons on a generated configuration.
fn ensure_slurm() -> Result<()> {
    let installed = |p: &str| {
        ["/usr/sbin", "/usr/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(p).exists())
    };
    let all = || {
        ["slurmctld", "slurmd", "sbatch", "scontrol"]
            .iter()
            .all(|p| installed(p))
    };
    if all() {
        return Ok(());
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !(root_user && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "Slurm is not installed and cannot be installed here (needs root and apt-get: apt-get install slurmctld slurmd slurm-client slurm-wlm-basic-plugins)"
        );
    }
    eprintln!(
        "xtask: installing Slurm for the cluster test (apt-get install slurmctld slurmd slurm-client slurm-wlm-basic-plugins)"
    );
    status(Command::new("apt-get").args(["update", "-q"]))?;
    status(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "slurmctld",
                "slurmd",
                "slurm-client",
                "slurm-wlm-basic-plugins",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !all() {
        bail!("apt-get installed Slurm but its programs are not in /usr/sbin or /usr/bin");
    }
    Ok(())
}

/// `python3 -m venv` with pip works (Debian's python3 needs python3-venv for it: installed with
/// apt-get where missing and possible).
fn ensure_python_venv() -> Result<()> {
    let works = || {
        Command::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("python3 with venv and ensurepip is missing and apt-get is not here");
    }
    eprintln!(
        "xtask: installing python3-venv for the TensorBoard test (apt-get install python3-venv)"
    );
    status(Command::new("apt-get").args(["update", "-q"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "python3-venv"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !works() {
        bail!("apt-get installed python3-venv but `python3 -m venv` still lacks ensurepip");
    }
    Ok(())
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

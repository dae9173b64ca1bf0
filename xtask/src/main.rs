//! Developer and user shortcuts. Everything here is reachable from the `bigbatch` CLI too.
//!
//! - `cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]`: composes
//!   `configs/models/<model>.ron` with `configs/optimizers/<optimizer>.ron` and trains (release
//!   build) into `runs/<model>-<optimizer>`.
//! - `cargo xtask test [--wgpu]`: formatting, clippy (`-D warnings`) over all targets with all
//!   features (so the `wgpu` and `cuda` backends are type-checked too), then all tests: what CI
//!   runs. `--wgpu` adds the WGPU test set, on Mesa's software Vulkan where no GPU driver is
//!   installed (installed with apt-get when missing and it runs as root on Debian/Ubuntu).
//!
//! burn 0.22's CUDA backend depends on `tracel-llvm-bundler`, whose build script downloads an LLVM
//! bundle even for `cargo check`. Its documented docs.rs switch (`DOCS_RS` set) skips that
//! download, so the clippy step sets `DOCS_RS=1`; a real CUDA build needs network access.

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
        Some("test") => match args.get(1).map(String::as_str) {
            None => test(false),
            Some("--wgpu") => test(true),
            Some(other) => bail!("cargo xtask test: unknown option {other} (only --wgpu)"),
        },
        _ => bail!(
            "usage:\n  cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]\n  cargo xtask test [--wgpu]"
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
    let optimizer_file = config_file("optimizers", optimizer)?;
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
    // Build first, with cargo's own progress (a cold release build takes about 7 minutes on 2
    // cores), then run the binary: never a silent wait.
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
    eprintln!(
        "xtask: training {} + {} into {}",
        model_file.display(),
        optimizer_file.display(),
        out.display()
    );
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_relative() => std::env::current_dir()?.join(dir),
        Some(dir) => dir,
        None => root().join("target"),
    };
    let mut cmd = Command::new(target.join("release/bigbatch"));
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
    // With --wgpu the tests include the WGPU set (tests/tests/support/wgpu.rs), run on whatever
    // Vulkan driver the machine has; Mesa's software one (lavapipe) is enough. It is not part of
    // CI: building burn's WGPU stack into the tests adds about 30 minutes on 2 cores and the set
    // runs for minutes on the software renderer.
    let tests: &[&str] = if wgpu {
        &["test", "--workspace", "--features", "bigbatch-tests/wgpu"]
    } else {
        &["test", "--workspace"]
    };
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
    if wgpu {
        run.env("XDG_RUNTIME_DIR", ensure_vulkan()?);
    }
    eprintln!("xtask: cargo {}", tests.join(" "));
    status(&mut run)
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

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

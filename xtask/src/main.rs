//! Developer and user shortcuts. Everything here is reachable from the `bigbatch` CLI too.
//!
//! - `cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]`: composes
//!   `configs/models/<model>.ron` with `configs/optimizers/<optimizer>.ron` and trains (release
//!   build) into `runs/<model>-<optimizer>`.
//! - `cargo xtask test`: formatting, clippy (`-D warnings`) over all targets with all features
//!   (so the `wgpu` and `cuda` backends are type-checked too), then all tests: what CI runs.
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
        Some("test") => test(),
        _ => bail!(
            "usage:\n  cargo xtask train <model> <optimizer> [--features F] [-- <bigbatch train args>]\n  cargo xtask test"
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

fn test() -> Result<()> {
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
    type Step<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let steps: [Step; 3] = [
        (&["fmt", "--all", "--check"], None),
        (clippy, Some(("DOCS_RS", "1"))),
        (&["test", "--workspace"], None),
    ];
    for (args, env) in steps {
        eprintln!("xtask: cargo {}", args.join(" "));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root()).args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        status(&mut cmd)?;
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

//! TensorBoard event files: the scalars of a run (loss, learning rate, accuracies, diagnostics)
//! written live during training ([`crate::settings::TrainSettings::tensorboard`]) or afterwards
//! from a run directory ([`export`]).
//!
//! The format (TensorFlow's `record_writer.cc` and `event.proto`): each record is
//!
//! ```text
//! u64 length (little endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
//! masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8
//! ```
//!
//! and each `data` an `Event` protobuf: the first carries `file_version: "brain.Event:2"`, the
//! others a `Summary` of `simple_value`s. A resumed run starts a new file with a
//! `SessionLog { status: START }` at the resumed step, which makes TensorBoard drop the earlier
//! file's events from that step on (its "purge orphaned data"), so a resumed run reads as an
//! uninterrupted one.

use crate::run_dir::read_jsonl;
use anyhow::{Context, Result, bail};
use bigbatch_core::diagnostics::StepDiagnostics;
use bigbatch_core::params::ParamKind;
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// `optional`: a 0.0 is written too (TensorBoard reads an absent value as no scalar).
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    /// 1: START.
    #[prost(int32, tag = "1")]
    status: i32,
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One framed record.
fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends events to one new event file; each event is flushed as it is written.
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.<microseconds>.bigbatch.<pid>` (names sort in
    /// creation order, which is the order TensorBoard reads a directory's files in) and writes the
    /// file-version event. `resumed_at`: the step a resumed run continues from (a `SessionLog`
    /// START there drops the older files' events from that step on).
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("train.tensorboard: cannot create {}", dir.display()))?;
        let mut path;
        loop {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            path = dir.join(format!(
                "events.out.tfevents.{:010}.{:06}.bigbatch.{}",
                t.as_secs(),
                t.subsec_micros(),
                std::process::id()
            ));
            if !path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(2));
        }
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = Self { file, path };
        writer.event(0, What::FileVersion("brain.Event:2".into()))?;
        if let Some(step) = resumed_at {
            writer.event(step, What::SessionLog(SessionLog { status: 1 }))?;
        }
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn event(&mut self, step: u64, what: What) -> Result<()> {
        let event = Event {
            wall_time: now(),
            step: step as i64,
            what: Some(what),
        };
        self.file
            .write_all(&record(&event.encode_to_vec()))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// One event holding `scalars` at `step`.
    pub fn scalars(&mut self, step: u64, scalars: &[(String, f64)]) -> Result<()> {
        if scalars.is_empty() {
            return Ok(());
        }
        let value = scalars
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
            })
            .collect();
        self.event(step, What::Summary(Summary { value }))
    }
}

/// The scalars of a metrics line (`metrics.jsonl`) and the step TensorBoard shows them at: a
/// training step's `loss` and `lr` at its step, an evaluation's accuracies (and extra metrics) at
/// the number of updates done. Other lines give nothing.
pub fn metrics_scalars(line: &serde_json::Value) -> Option<(u64, Vec<(String, f64)>)> {
    let step = line["step"].as_u64()?;
    let evaluation = line.get("val_accuracy").is_some();
    let scalars = line
        .as_object()?
        .iter()
        .filter(|(k, _)| match evaluation {
            true => k.as_str() != "step",
            false => matches!(k.as_str(), "loss" | "lr"),
        })
        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
        .collect();
    Some((step, scalars))
}

/// A kind's tag segment: `weights`, `biases`, `batch_norm`.
pub fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Weight => "weights",
        ParamKind::Bias => "biases",
        ParamKind::Norm => "batch_norm",
    }
}

/// The scalars of one diagnosed step: `grad_norm/global`, `clip_factor/<group>`, and per tensor
/// `<quantity>/<path>` for weight_norm, grad_norm, update_norm, update_ratio, trust_ratio (where
/// applied) and effective_lr.
pub fn diagnostics_scalars(d: &StepDiagnostics) -> Vec<(String, f64)> {
    let mut out = vec![("grad_norm/global".to_string(), d.global_grad_norm)];
    for c in &d.clipping {
        out.push((format!("clip_factor/{}", c.group), c.factor));
    }
    for t in &d.tensors {
        let path = &t.path;
        out.push((format!("weight_norm/{path}"), t.weight_norm));
        out.push((format!("grad_norm/{path}"), t.grad_norm));
        out.push((format!("update_norm/{path}"), t.update_norm));
        if let Some(r) = t.update_ratio {
            out.push((format!("update_ratio/{path}"), r));
        }
        if let Some(r) = t.trust_ratio {
            out.push((format!("trust_ratio/{path}"), r));
        }
        out.push((format!("effective_lr/{path}"), t.effective_lr));
    }
    out
}

/// Writes the event file of a finished (or stopped) run directory into `out`: every scalar of its
/// `metrics.jsonl` and `diagnostics.jsonl` (when it has one). Returns the file written.
pub fn export(run_dir: &Path, out: &Path) -> Result<PathBuf> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        bail!(
            "{}: no metrics.jsonl (is it a run directory?)",
            run_dir.display()
        );
    }
    let mut writer = EventWriter::create(out, None)?;
    for line in read_jsonl(&metrics)? {
        if let Some((step, scalars)) = metrics_scalars(&line) {
            writer.scalars(step, &scalars)?;
        }
    }
    for (step, d) in crate::run_dir::read_diagnostics(run_dir)? {
        writer.scalars(step, &diagnostics_scalars(&d))?;
    }
    Ok(writer.path().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C of "123456789" is 0xe3069283 (the check value of the Castagnoli polynomial);
    /// masked as TensorFlow's `crc32c::Mask` (rotate right by 15, add 0xa282ead8), worked out
    /// separately: 0x2507c60d + 0xa282ead8 = 0xc78ab0e5.
    #[test]
    fn records_are_framed_with_masked_crc32c() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
    }

    /// The Event protobuf by hand: field 1 (double) = tag 0x09, field 2 (varint) = 0x10, field 5
    /// (message) = 0x2a; Summary.value (1, message) = 0x0a; Value.tag (1, string) = 0x0a,
    /// Value.simple_value (2, fixed32) = 0x15.
    #[test]
    fn a_scalar_event_encodes_as_tensorflow_does() {
        let event = Event {
            wall_time: 0.0,
            step: 3,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: "lr".into(),
                    simple_value: Some(0.0),
                }],
            })),
        };
        let bytes = event.encode_to_vec();
        // wall_time 0.0 is a proto3 default and is not written.
        let expected = [
            0x10, 3, 0x2a, 11, 0x0a, 9, 0x0a, 2, b'l', b'r', 0x15, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, expected);
    }
}

//! The built-in workloads, registered as the workload plugins `resnet` (image classification:
//! [`classify`]) and `bert` (BERT pretraining: [`pretrain`]); run configs name them as
//! `model: ResNet(..)` and `model: Bert(..)`. [`bert_data`] makes BERT pretraining data
//! (`bigbatch bert-vocab`, `bigbatch bert-data`).
//!
//! Depends on the engine (the `Workload` trait), models and data; must not depend on clap,
//! studies or any concrete optimizer. A binary keeps these registrations only if it calls
//! [`link`].

pub mod bert_data;
pub mod classify;
pub mod pretrain;

use anyhow::{Result, bail};
use bigbatch_engine::run_config::DataSource;
use bigbatch_engine::workload::{Trainable, WorkloadContext, WorkloadPlugin};
use bigbatch_models::{BertConfig, ResNetConfig};

/// `model: ResNet(..)`: checks the model and that ghost batch norm's virtual batches fit the
/// batch split (every device's share of a micro-batch holds whole virtual batches).
fn validate_resnet(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<()> {
    let m: ResNetConfig = ctx.parse_config(config)?;
    m.validate()?;
    let t = ctx.train;
    let share = t.micro_batch_size() / t.device_count();
    match m.bn.virtual_batch_size {
        Some(v) if !t.batch_size.is_multiple_of(v) => bail!(
            "model.bn.virtual_batch_size: {v} does not divide train.batch_size {}; \
             every virtual batch must be full",
            t.batch_size
        ),
        Some(v) if !share.is_multiple_of(v) => bail!(
            "model.bn.virtual_batch_size: {v} does not divide the {share} examples each \
             device computes at once (train.micro_batch_size {} over {} device(s)); \
             batch-norm statistics must come from whole virtual batches",
            t.micro_batch_size(),
            t.device_count()
        ),
        None if share < t.batch_size => bail!(
            "model.bn.virtual_batch_size is None (statistics over the whole batch) but \
             each forward pass sees only {share} of the {} examples \
             (train.micro_batch_size {} over {} device(s)): batch-norm statistics would \
             silently become per micro-batch. Set model.bn.virtual_batch_size to a \
             divisor of {share} (the paper uses 64 for ResNet-50) to make that explicit",
            t.batch_size,
            t.micro_batch_size(),
            t.device_count()
        ),
        _ => Ok(()),
    }
}

fn build_resnet(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<Box<dyn Trainable>> {
    let model: ResNetConfig = ctx.parse_config(config)?;
    let workload: Box<dyn Trainable> = match ctx.data {
        DataSource::ImageNet(source) => Box::new(classify::ImageNetClassification::new(
            &model, source, ctx.train,
        )?),
        source => Box::new(classify::InMemoryClassification::new(
            &model, source, ctx.train,
        )?),
    };
    Ok(workload)
}

/// `model: Bert(..)`: checks the model and, for data made at start, the data creation settings.
fn validate_bert(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<()> {
    let m: BertConfig = ctx.parse_config(config)?;
    m.validate()?;
    if let DataSource::Bert(d) = ctx.data {
        d.creation.validate("data.source.creation.")?;
    }
    Ok(())
}

fn build_bert(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<Box<dyn Trainable>> {
    let model: BertConfig = ctx.parse_config(config)?;
    Ok(Box::new(pretrain::Pretraining::new(
        &model, ctx.data, ctx.train,
    )?))
}

bigbatch_engine::inventory::submit! {
    WorkloadPlugin {
        name: "resnet",
        description: "ResNet v1.5/v1.0 image classification with label smoothing: in-memory IDX \
                      images (embedded Fashion-MNIST, MNIST) or ImageNet folders",
        config_doc: "model: ResNet(..): the fields of bigbatch_models::ResNetConfig (configs/models/resnet.ron)",
        validate: validate_resnet,
        build: build_resnet,
    }
}

bigbatch_engine::inventory::submit! {
    WorkloadPlugin {
        name: "bert",
        description: "BERT pretraining (masked LM + next sentence) on shards or on data made at start",
        config_doc: "model: Bert(..): the fields of bigbatch_models::BertConfig (configs/models/bert-*.ron)",
        validate: validate_bert,
        build: build_bert,
    }
}

/// Keeps this crate linked: a binary that calls it carries the `resnet` and `bert` workloads.
pub fn link() {}

#[cfg(test)]
mod tests {
    use super::*;
    use bigbatch_engine::run_config::TrainSettings;

    fn train(batch: usize, micro: Option<usize>) -> TrainSettings {
        TrainSettings {
            batch_size: batch,
            micro_batch_size: micro,
            devices: None,
            steps: 1,
            label_smoothing: 0.0,
            seed: 0,
            eval_every: 1,
            train_eval_examples: 10,
            init_from: None,
            diagnostics_every: None,
            tensorboard: None,
        }
    }

    fn check(virtual_batch: Option<usize>, t: &TrainSettings) -> Result<()> {
        let mut model = ResNetConfig::resnet_mini();
        model.bn.virtual_batch_size = virtual_batch;
        let ctx = WorkloadContext {
            prefix: "model",
            data: &DataSource::EmbeddedFashionMnist,
            train: t,
        };
        validate_resnet(&serde_json::to_value(&model)?, &ctx)
    }

    /// Ghost batch norm's virtual batches must be whole in every forward pass: 32 = 4 x 8 passes,
    /// 5 does not divide 32, 8 does not divide micro-batches of 4, and whole-batch statistics
    /// with micro-batches would silently change meaning.
    #[test]
    fn resnet_batch_norm_must_fit_the_split() {
        check(Some(8), &train(32, None)).unwrap();
        check(Some(4), &train(32, Some(4))).unwrap();
        check(None, &train(32, None)).unwrap();
        let e = check(Some(5), &train(32, None)).unwrap_err().to_string();
        assert!(e.contains("5 does not divide train.batch_size 32"), "{e}");
        let e = check(Some(8), &train(32, Some(4))).unwrap_err().to_string();
        assert!(e.contains("8 does not divide the 4 examples"), "{e}");
        let e = check(None, &train(32, Some(16))).unwrap_err().to_string();
        assert!(e.contains("would silently become per micro-batch"), "{e}");
    }

    #[test]
    fn the_built_in_workloads_are_registered() {
        let names: Vec<_> = bigbatch_engine::workload::plugins()
            .unwrap()
            .iter()
            .map(|p| p.name)
            .collect();
        assert!(
            names.contains(&"resnet") && names.contains(&"bert"),
            "{names:?}"
        );
    }

    #[test]
    fn resnet_config_errors_name_the_field() {
        let ctx = WorkloadContext {
            prefix: "model",
            data: &DataSource::EmbeddedFashionMnist,
            train: &train(8, None),
        };
        let mut value = serde_json::to_value(ResNetConfig::resnet_mini()).unwrap();
        value["widths"] = serde_json::json!("wide");
        let e = validate_resnet(&value, &ctx).unwrap_err().to_string();
        assert!(e.starts_with("model.widths:"), "{e}");
    }
}

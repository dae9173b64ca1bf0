//! Each convolution of resnet-mini (the CPU preset: 28x28x1, stride-2 stem, batch 256) on the flex
//! CPU backend, timed in its parts: the forward pass (`conv2d`), the weight gradient
//! (`conv2d_weight_backward`) and the input gradient (the transposed convolution that is its
//! backward), and forward + backward through autodiff (`y . upstream` summed, then backward) for
//! `conv2d` and for the two matrix-product layouts of `bigbatch_models::conv::as_matmul`.
//!
//!     cargo bench -p bigbatch-benches --bench conv_layers

use bigbatch_models::ResNetConfig;
use bigbatch_models::conv::{OneByOne, as_matmul};
use bigbatch_models::resnet::Stem;
use burn::nn::conv::Conv2d;
use burn::tensor::module::{conv_transpose2d, conv2d, conv2d_weight_backward};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

/// A convolution of the network with its input size.
struct Layer<'a> {
    name: String,
    conv: &'a Conv2d,
    size: usize,
}

fn padding(conv: &Conv2d) -> usize {
    match conv.padding {
        burn::nn::PaddingConfig2d::Explicit(p, ..) => p,
        _ => 0,
    }
}

fn out_size(conv: &Conv2d, size: usize) -> usize {
    (size + 2 * padding(conv) - conv.kernel_size[0]) / conv.stride[0] + 1
}

fn benches(c: &mut Criterion) {
    bigbatch_engine::keep_freed_memory();
    let plain = Device::flex();
    let config = ResNetConfig {
        stem: Stem::Small { stride: 2 },
        ..ResNetConfig::resnet_mini()
    };
    let model = config.init_for_batch(&plain, 256).unwrap();
    let mut layers = vec![Layer {
        name: "conv1".into(),
        conv: &model.conv1,
        size: 28,
    }];
    let mut size = out_size(&model.conv1, 28);
    for (stage, blocks) in [&model.layer1, &model.layer2, &model.layer3, &model.layer4]
        .into_iter()
        .enumerate()
    {
        for (i, block) in blocks.iter().enumerate() {
            let at = |name: &str| format!("layer{}.{i}.{name}", stage + 1);
            let s1 = out_size(&block.conv1, size);
            let s2 = out_size(&block.conv2, s1);
            layers.push(Layer {
                name: at("conv1"),
                conv: &block.conv1,
                size,
            });
            layers.push(Layer {
                name: at("conv2"),
                conv: &block.conv2,
                size: s1,
            });
            layers.push(Layer {
                name: at("conv3"),
                conv: &block.conv3,
                size: s2,
            });
            if let Some(d) = &block.downsample {
                layers.push(Layer {
                    name: at("downsample"),
                    conv: &d.conv,
                    size,
                });
            }
            size = out_size(&block.conv3, s2);
        }
    }
    let n = 256;
    let mut group = c.benchmark_group("conv");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for layer in &layers {
        let [o, ci, k, _] = layer.conv.weight.dims();
        let (h, s, p) = (layer.size, layer.conv.stride[0], padding(layer.conv));
        let out = out_size(layer.conv, h);
        let label = format!("{} {k}x{k} {ci}-{o} s{s} {h}x{h}", layer.name);
        let x = Tensor::<4>::random([n, ci, h, h], Distribution::Normal(0.0, 1.0), &plain);
        let w = layer.conv.weight.val();
        let dy = Tensor::<4>::random([n, o, out, out], Distribution::Normal(0.0, 1.0), &plain);
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        group.bench_function(format!("{label}/forward"), |b| {
            b.iter(|| conv2d(x.clone(), w.clone(), None, options.clone()).into_data())
        });
        group.bench_function(format!("{label}/weight_gradient"), |b| {
            b.iter(|| {
                conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), options.clone())
                    .into_data()
            })
        });
        // The input gradient is the transposed convolution of the output gradient; the output
        // padding restores the rows a strided convolution dropped.
        let back = (out - 1) * s + k - 2 * p;
        let transpose = ConvTransposeOptions::new([s, s], [p, p], [h - back, h - back], [1, 1], 1);
        group.bench_function(format!("{label}/input_gradient"), |b| {
            b.iter(|| conv_transpose2d(dy.clone(), w.clone(), None, transpose.clone()).into_data())
        });
        let layouts = [OneByOne::Conv, OneByOne::Batched, OneByOne::Flat];
        let grad = plain.clone().autodiff();
        let (xg, wg, dyg) = (
            Tensor::<4>::from_data(x.to_data(), &grad),
            Tensor::<4>::from_data(w.to_data(), &grad),
            Tensor::<4>::from_data(dy.to_data(), &grad),
        );
        for layout in layouts {
            let run = |forward_only: bool| {
                let (x, w) = (xg.clone().require_grad(), wg.clone().require_grad());
                let y = as_matmul(w, x, [s, s], p, layout);
                if forward_only {
                    y.into_data();
                } else {
                    let _ = (y * dyg.clone()).sum().backward();
                }
            };
            if layout != OneByOne::Conv {
                group.bench_function(format!("{label}/forward_{layout:?}"), |b| {
                    b.iter(|| run(true))
                });
            }
            group.bench_function(format!("{label}/forward_backward_{layout:?}"), |b| {
                b.iter(|| run(false))
            });
        }
    }
    group.finish();
}

criterion_group!(conv_benches, benches);
criterion_main!(conv_benches);

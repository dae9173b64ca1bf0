//! Convolutions that are matrix products, computed as matrix products.
//!
//! A 1x1 convolution without padding, dilation or groups maps every pixel's `C` channels to `O`
//! channels with the same `O x C` matrix: `y[n, o, p] = sum_c w[o, c] x[n, c, p]` over the pixels
//! `p` (with stride `s`, the pixels `(s i, s j)` of the input: a subsample, then the product).
//! burn's CPU backend computes such a convolution's weight gradient as a forward convolution over
//! swapped dimensions, several times slower than the matrix product it is; written as `matmul`,
//! autodiff's backward is matrix products too. The module and its parameter (`weight`, shape
//! `[O, C, 1, 1]`) stay burn's `Conv2d`, so parameter paths and checkpoints do not change.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, s};

/// How a 1x1 convolution is laid out as a matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneByOne {
    /// burn's `conv2d`.
    Conv,
    /// `[1, O, C] @ [N, C, H W]`: no layout copy; the weight gradient is `N` products summed.
    Batched,
    /// `[O, C] @ [C, N H W]`: one product each way, with the input and output transposed
    /// (layout copies) around it.
    Flat,
}

/// The layout the models use for a 1x1 convolution with `pixels` output pixels per image, chosen
/// by `benches/benches/conv_layers.rs` (figures in docs/benchmarks.md): [`OneByOne::Batched`]
/// from 32 pixels up (2.3-3.6x faster forward + backward than `conv2d` on resnet-mini's 14x14
/// and 7x7 maps); below, its weight gradient is many small products and [`OneByOne::Flat`]
/// wins (up to 3.9x faster than `conv2d` at 2x2, where `Batched` is slower than `conv2d`).
pub fn model_layout(pixels: usize) -> OneByOne {
    if pixels >= 32 {
        OneByOne::Batched
    } else {
        OneByOne::Flat
    }
}

/// The symmetric zero padding of `conv` when it is one that [`as_matmul`] computes: no dilation,
/// one group, no bias, the same padding on every side.
fn plain_padding(conv: &Conv2d) -> Option<usize> {
    let padding = match &conv.padding {
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Explicit(a, b, c, d) if [b, c, d].iter().all(|p| *p == a) => Some(*a),
        _ => None,
    }?;
    (conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.bias.is_none()
        && conv.kernel_size[0] == conv.kernel_size[1])
        .then_some(padding)
}

/// `conv` applied to `x` `[N, C, H, W]`, each shape the fastest way measured on the CPU
/// (`benches/benches/conv_layers.rs`, figures in docs/benchmarks.md): a 1x1 convolution as a
/// matrix product (in the layout of [`model_layout`]); a larger kernel over a single input
/// channel (a grayscale stem) as a matrix product over its patches (1.7x faster forward +
/// backward on resnet-mini's stem); any other through burn's `conv2d` (the patch form was 1.4-4.6x
/// slower there).
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(padding) = plain_padding(conv) else {
        return conv.forward(x);
    };
    let [_, c, h, w] = x.dims();
    let k = conv.kernel_size[0];
    if k == 1 && padding == 0 {
        let pixels = h.div_ceil(conv.stride[0]) * w.div_ceil(conv.stride[1]);
        one_by_one(conv.weight.val(), x, conv.stride, model_layout(pixels))
    } else if c == 1 {
        as_matmul(
            conv.weight.val(),
            x,
            conv.stride,
            padding,
            OneByOne::Batched,
        )
    } else {
        conv.forward(x)
    }
}

/// A 1x1 convolution of `x` `[N, C, H, W]` with `weight` `[O, C, 1, 1]` and `stride`, in the
/// given layout. The output has `ceil(H / s)` rows, as `conv2d` without padding.
pub fn one_by_one(
    weight: Tensor<4>,
    x: Tensor<4>,
    stride: [usize; 2],
    layout: OneByOne,
) -> Tensor<4> {
    as_matmul(weight, x, stride, 0, layout)
}

/// A `k x k` convolution (zero padding `padding` on every side, no dilation, one group) as a
/// matrix product over patches: the `k^2` shifted, strided views of the padded input stacked
/// beside the channels (`[N, C k^2, pixels]`, the order of `weight` `[O, C, k, k]` flattened),
/// multiplied by the flattened weight. For `k = 1` without padding the view is the input
/// (subsampled for a stride), with no copy.
pub fn as_matmul(
    weight: Tensor<4>,
    x: Tensor<4>,
    stride: [usize; 2],
    padding: usize,
    layout: OneByOne,
) -> Tensor<4> {
    let [o, c, kh, kw] = weight.dims();
    if layout == OneByOne::Conv {
        let options = burn::tensor::ops::ConvOptions::new(stride, [padding, padding], [1, 1], 1);
        return burn::tensor::module::conv2d(x, weight, None, options);
    }
    let x = if padding > 0 {
        x.pad(
            (padding, padding, padding, padding),
            burn::tensor::ops::PadMode::Constant(0.0),
        )
    } else {
        x
    };
    // Flat puts the channels first, so that the patches flatten to `[C k^2, N pixels]`.
    let x = if layout == OneByOne::Flat {
        x.swap_dims(0, 1)
    } else {
        x
    };
    let [d0, d1, h, w] = x.dims();
    let (ho, wo) = ((h - kh) / stride[0] + 1, (w - kw) / stride[1] + 1);
    let view = |i: usize, j: usize| {
        if (kh, kw, stride) == (1, 1, [1, 1]) {
            x.clone()
        } else {
            x.clone().slice(s![
                ..,
                ..,
                i..i + (ho - 1) * stride[0] + 1;stride[0],
                j..j + (wo - 1) * stride[1] + 1;stride[1]
            ])
        }
    };
    let patches: Vec<Tensor<4>> = (0..kh)
        .flat_map(|i| (0..kw).map(move |j| (i, j)))
        .map(|(i, j)| view(i, j))
        .collect();
    let k2 = kh * kw;
    let weight = weight.reshape([o, c * k2]);
    match layout {
        OneByOne::Batched => {
            // [N, C, k^2, ho, wo] -> [N, C k^2, pixels].
            let cols = if k2 == 1 {
                patches[0].clone().reshape([d0, d1, ho * wo])
            } else {
                Tensor::<4>::stack::<5>(patches, 2).reshape([d0, d1 * k2, ho * wo])
            };
            weight
                .unsqueeze_dim::<3>(0)
                .matmul(cols)
                .reshape([d0, o, ho, wo])
        }
        OneByOne::Flat => {
            // [C, k^2, N, ho, wo] -> [C k^2, N pixels].
            let cols = if k2 == 1 {
                patches[0].clone().reshape([d0, d1 * ho * wo])
            } else {
                Tensor::<4>::stack::<5>(patches, 1).reshape([d0 * k2, d1 * ho * wo])
            };
            weight.matmul(cols).reshape([o, d1, ho, wo]).swap_dims(0, 1)
        }
        OneByOne::Conv => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Every layout gives `conv2d`'s output and gradients (input and weight) to f32 tolerance,
    /// for 1x1 and 3x3 kernels (padding 1), stride 1 and 2, even and odd sizes.
    #[test]
    fn matrix_products_equal_conv2d() {
        let _guard = crate::rng_guard();
        let device = Device::flex().autodiff();
        let cases = [
            (1usize, 1usize, 6usize),
            (1, 2, 6),
            (1, 2, 7),
            (1, 1, 1),
            (3, 1, 6),
            (3, 2, 6),
            (3, 2, 7),
            (3, 1, 2),
        ];
        for (k, stride, size) in cases {
            let padding = k / 2;
            let x =
                Tensor::<4>::random([3, 5, size, size], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random([4, 5, k, k], Distribution::Normal(0.0, 1.0), &device);
            let upstream = {
                let out = (size + 2 * padding - k) / stride + 1;
                Tensor::<4>::random([3, 4, out, out], Distribution::Normal(0.0, 1.0), &device)
            };
            let run = |layout| {
                let (x, w) = (
                    x.clone().detach().require_grad(),
                    w.clone().detach().require_grad(),
                );
                let y = as_matmul(w.clone(), x.clone(), [stride, stride], padding, layout);
                let grads = (y.clone() * upstream.clone()).sum().backward();
                (
                    y.into_data().try_to_vec::<f32>().unwrap(),
                    x.grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap(),
                    w.grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap(),
                )
            };
            let reference = run(OneByOne::Conv);
            for layout in [OneByOne::Batched, OneByOne::Flat] {
                let got = run(layout);
                for (what, a, b) in [
                    ("output", &got.0, &reference.0),
                    ("input gradient", &got.1, &reference.1),
                    ("weight gradient", &got.2, &reference.2),
                ] {
                    assert_eq!(a.len(), b.len(), "{layout:?} stride {stride}: {what}");
                    for (p, q) in a.iter().zip(b) {
                        assert!(
                            (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                            "{layout:?} {k}x{k} stride {stride} size {size}: {what} {p} vs {q}"
                        );
                    }
                }
            }
        }
    }

    /// The dispatch of [`forward`] gives the module's own output for each shape it treats
    /// specially: 1x1 at 14x14 (batched), 1x1 stride 2 to 2x2 (flat), a one-channel 3x3 stem
    /// with stride 2 and padding 1 (patches), and a 3x3 over several channels (`conv2d`).
    #[test]
    fn forward_equals_the_module() {
        let _guard = crate::rng_guard();
        let device = Device::flex();
        let config = |cin, cout, k, stride, pad| {
            burn::nn::conv::Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(&device)
        };
        for (conv, size) in [
            (config(6, 4, 1, 1, 0), 14),
            (config(6, 4, 1, 2, 0), 4),
            (config(1, 4, 3, 2, 1), 9),
            (config(3, 4, 3, 1, 1), 5),
        ] {
            let [_, cin, _, _] = conv.weight.dims();
            let x = Tensor::<4>::random(
                [2, cin, size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let ours = forward(&conv, x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let theirs = conv.forward(x).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(ours.len(), theirs.len());
            for (p, q) in ours.iter().zip(&theirs) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}

//! Datasets for bigbatch.
//!
//! - [`idx`]: the IDX format of MNIST and Fashion-MNIST (raw or gzip), and the embedded
//!   Fashion-MNIST subset (10,000 training and 2,000 test images from Debian's
//!   `dataset-fashion-mnist` package, MIT; license beside the files in `embedded/`).
//! - [`ImageDataset`] and [`EpochSampler`]: normalised batches with deterministic shuffling.
//!
//! Must not depend on models, optimizers, the engine or studies.

pub mod bert;
pub mod idx;
pub mod imagenet;

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Grayscale or colour images with integer labels, stored as bytes `[n, channels, height, width]`.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

impl ImageDataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Per-channel-agnostic mean and standard deviation of the pixel values scaled to [0, 1].
    pub fn pixel_stats(&self) -> (f64, f64) {
        let n = self.images.len() as f64;
        let mean = self.images.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
        let var = self
            .images
            .iter()
            .map(|&p| (p as f64 / 255.0 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    /// The examples at `indices` as `(images [b, c, h, w] normalised by (x/255 - mean)/std,
    /// labels [b])`.
    pub fn batch(
        &self,
        indices: &[usize],
        norm: (f64, f64),
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let size = self.image_size();
        let (mean, std) = (norm.0 as f32, norm.1 as f32);
        let mut pixels = Vec::with_capacity(indices.len() * size);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend(
                self.images[i * size..(i + 1) * size]
                    .iter()
                    .map(|&p| (p as f32 / 255.0 - mean) / std),
            );
            labels.push(self.labels[i] as i64);
        }
        let b = indices.len();
        let images = Tensor::from_data(
            TensorData::new(pixels, [b, self.channels, self.height, self.width]),
            device,
        );
        let labels = Tensor::from_data(TensorData::new(labels, [b]), device);
        (images, labels)
    }

    /// The first `n` examples (or all, if fewer).
    pub fn head(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        ImageDataset {
            images: self.images[..n * self.image_size()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.clone()
        }
    }
}

/// Draws batches without replacement, reshuffling each epoch with a seeded ChaCha8 generator;
/// the incomplete last batch of an epoch is dropped. The sequence of batches depends only on the
/// seed, the dataset size and the batch size.
pub struct EpochSampler {
    rng: ChaCha8Rng,
    order: Vec<usize>,
    position: usize,
    batch_size: usize,
    pub epoch: u64,
}

impl EpochSampler {
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            bail!("train.batch_size: expected a positive batch size");
        }
        if batch_size > len {
            bail!(
                "train.batch_size: {batch_size} is larger than the training set ({len} examples)"
            );
        }
        let mut s = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            order: (0..len).collect(),
            position: 0,
            batch_size,
            epoch: 0,
        };
        s.order.shuffle(&mut s.rng);
        Ok(s)
    }

    /// Draws and discards `n` batches (resuming a run at step `n`).
    pub fn skip(&mut self, n: u64) {
        for _ in 0..n {
            self.next_batch();
        }
    }

    pub fn next_batch(&mut self) -> &[usize] {
        if self.position + self.batch_size > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.position = 0;
            self.epoch += 1;
        }
        let start = self.position;
        self.position += self.batch_size;
        &self.order[start..self.position]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_is_deterministic_and_covers_an_epoch() {
        let mut a = EpochSampler::new(10, 3, 7).unwrap();
        let mut b = EpochSampler::new(10, 3, 7).unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let x = a.next_batch().to_vec();
            assert_eq!(x, b.next_batch());
            seen.extend(x);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        a.next_batch();
        assert_eq!(a.epoch, 1);
        assert!(EpochSampler::new(2, 3, 0).is_err());
    }

    #[test]
    fn batch_normalises() {
        let ds = ImageDataset {
            images: vec![0, 255, 51, 102],
            labels: vec![3, 4],
            channels: 1,
            height: 1,
            width: 2,
            num_classes: 10,
        };
        let (x, y) = ds.batch(&[1], (0.5, 0.25), &Device::flex());
        let v: Vec<f32> = x.into_data().try_to_vec().unwrap();
        assert!(
            (v[0] - (0.2 - 0.5) / 0.25).abs() < 1e-6 && (v[1] - (0.4 - 0.5) / 0.25).abs() < 1e-6
        );
        let l: Vec<i64> = y.into_data().convert::<i64>().try_to_vec().unwrap();
        assert_eq!(l, vec![4]);
    }
}

//! Images per second per core of the ImageNet training preprocessing (JPEG decode, MLPerf
//! distorted-bounding-box crop, bilinear resize to 224, flip, normalisation) on one thread, over
//! 200 generated 500x375 JPEGs (quality 90, smooth gradients plus noise so the entropy coder has
//! work). `benches/pil_pipeline.py` does the same work with PIL + numpy on the same files.
//!
//!     cargo bench -p bigbatch-benches --bench image_pipeline
//!     python3 benches/pil_pipeline.py target/bench-jpegs

use bigbatch_data::imagenet::{CropSampler, Rgb, train_transform};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn jpegs() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-jpegs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..200)
        .map(|i| {
            let path = dir.join(format!("{i:03}.jpg"));
            if !path.exists() {
                let img = image::RgbImage::from_fn(500, 375, |x, y| {
                    let n: u8 = rng.random_range(0..24);
                    image::Rgb([
                        (x / 2) as u8 ^ n,
                        (y * 2 / 3) as u8 + n,
                        ((x + y + i) % 256) as u8,
                    ])
                });
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                    .encode_image(&img)
                    .unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            std::fs::read(&path).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = jpegs();
    let sampler = CropSampler::mlperf();
    let mut group = c.benchmark_group("imagenet_train_pipeline");
    group.throughput(Throughput::Elements(files.len() as u64));
    group.sample_size(10);
    group.bench_function(
        "decode_crop_resize_flip_normalise_200_jpegs_1_thread",
        |b| {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            b.iter(|| {
                for bytes in &files {
                    let img = Rgb::decode(bytes).unwrap();
                    std::hint::black_box(train_transform(&img, &sampler, 224, &mut rng));
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

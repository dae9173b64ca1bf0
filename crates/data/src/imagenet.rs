//! ImageNet in the standard folder layout, and the MLPerf / paper (Appendix A.1) preprocessing.
//!
//! Training (the TensorFlow sequence the paper lists): `sample_distorted_bounding_box` ->
//! decode and crop -> `resize` to 224x224 (bilinear, half-pixel centres, no antialiasing, as TF2's
//! `tf.image.resize`) -> random horizontal flip -> float and normalise by the ImageNet mean and
//! standard deviation (per channel, in 0..255 units: mean 123.675, 116.28, 103.53; std 58.395,
//! 57.12, 57.375 — the flax/init2winit input pipeline's `MEAN_RGB`/`STDDEV_RGB`).
//! Evaluation (MLPerf reference `imagenet_preprocessing.py`): aspect-preserving resize of the
//! shorter side to 256, then a central 224x224 crop, then the same normalisation.
//!
//! [`load_epoch`] runs decode and augmentation on a pool of threads with prefetch; batches do not
//! depend on the number of workers; corrupt files are skipped, counted and reported with their
//! paths. Not yet here: the throughput benchmark against PIL.

use anyhow::{Context, Result, bail};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A crop rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// `tf.image.sample_distorted_bounding_box` with the whole image as the only bounding box.
#[derive(Clone, Debug, PartialEq)]
pub struct CropSampler {
    /// The crop must cover at least this fraction of the (whole-image) bounding box.
    pub min_object_covered: f32,
    /// Width / height range.
    pub aspect_ratio: (f32, f32),
    /// Crop area range as fractions of the image area.
    pub area: (f32, f32),
    /// Attempts before falling back to the whole image.
    pub max_attempts: u32,
}

impl CropSampler {
    /// The MLPerf ResNet reference (`imagenet_preprocessing.py`, `_decode_crop_and_flip`):
    /// min_object_covered 0.1, aspect ratio [0.75, 1.33], area [0.05, 1.0], 100 attempts.
    pub fn mlperf() -> Self {
        Self {
            min_object_covered: 0.1,
            aspect_ratio: (0.75, 1.33),
            area: (0.05, 1.0),
            max_attempts: 100,
        }
    }

    /// A crop of a `width` x `height` image: TensorFlow's `GenerateRandomCrop` tried up to
    /// `max_attempts` times with a uniform aspect ratio (the crop's height is uniform between
    /// the heights giving the minimum and maximum area, then `width = round(height * aspect)`,
    /// then a uniform offset), the whole image when no attempt succeeds.
    pub fn sample(&self, width: u32, height: u32, rng: &mut impl Rng) -> Rect {
        let whole = Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        for _ in 0..self.max_attempts {
            let aspect = self.aspect_ratio.0
                + rng.random::<f32>() * (self.aspect_ratio.1 - self.aspect_ratio.0);
            if let Some(r) = self.generate(width as i64, height as i64, aspect, rng) {
                let covered = (r.width as f32 * r.height as f32) / (width as f32 * height as f32);
                if covered >= self.min_object_covered {
                    return r;
                }
            }
        }
        whole
    }

    fn generate(&self, ow: i64, oh: i64, aspect: f32, rng: &mut impl Rng) -> Option<Rect> {
        let round = |x: f32| x.round_ties_even() as i64; // lrintf
        let min_area = self.area.0 * ow as f32 * oh as f32;
        let max_area = self.area.1 * ow as f32 * oh as f32;
        let mut height = round((min_area / aspect).sqrt());
        let mut max_height = round((max_area / aspect).sqrt());
        if round(max_height as f32 * aspect) > ow {
            max_height = ((ow as f32 + 0.5 - 1e-7) / aspect) as i64;
            if round(max_height as f32 * aspect) > ow {
                max_height -= 1;
            }
        }
        max_height = max_height.min(oh);
        if height >= max_height {
            height = max_height;
        }
        if height < max_height {
            height += rng.random_range(0..=(max_height - height));
        }
        let mut width = round(height as f32 * aspect);
        let mut area = (width * height) as f32;
        if area < min_area {
            height += 1;
            width = round(height as f32 * aspect);
            area = (width * height) as f32;
        }
        if area > max_area {
            height -= 1;
            width = round(height as f32 * aspect);
            area = (width * height) as f32;
        }
        if area < min_area
            || area > max_area
            || width > ow
            || height > oh
            || width <= 0
            || height <= 0
        {
            return None;
        }
        let y = if height < oh {
            rng.random_range(0..oh - height)
        } else {
            0
        };
        let x = if width < ow {
            rng.random_range(0..ow - width)
        } else {
            0
        };
        Some(Rect {
            x: x as u32,
            y: y as u32,
            width: width as u32,
            height: height as u32,
        })
    }
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Rgb {
    /// Decodes a JPEG (or any format the `image` crate reads) into RGB.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let img = image::load_from_memory(bytes)?.into_rgb8();
        Ok(Self {
            width: img.width(),
            height: img.height(),
            pixels: img.into_raw(),
        })
    }

    /// Bilinear resize of the `rect` region to `out_w` x `out_h` with half-pixel centres and no
    /// antialiasing (TF2 `tf.image.resize(method="bilinear")`): output pixel `i` samples source
    /// coordinate `(i + 0.5) * in / out - 0.5`, clamped to the region. Returns f32 HWC values.
    pub fn resize_region(&self, rect: Rect, out_w: u32, out_h: u32) -> Vec<f32> {
        let sx = rect.width as f32 / out_w as f32;
        let sy = rect.height as f32 / out_h as f32;
        let axis = |i: u32, scale: f32, len: u32| -> (u32, u32, f32) {
            let src = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
            let lo = src.floor() as u32;
            let hi = (lo + 1).min(len - 1);
            (lo, hi, src - lo as f32)
        };
        // The column taps and weights are the same for every row: compute them once.
        let columns: Vec<(usize, usize, f32)> = (0..out_w)
            .map(|ox| {
                let (x0, x1, fx) = axis(ox, sx, rect.width);
                (
                    ((rect.x + x0) * 3) as usize,
                    ((rect.x + x1) * 3) as usize,
                    fx,
                )
            })
            .collect();
        let stride = (self.width * 3) as usize;
        let mut out = Vec::with_capacity((out_w * out_h * 3) as usize);
        for oy in 0..out_h {
            let (y0, y1, fy) = axis(oy, sy, rect.height);
            let row0 = &self.pixels[(rect.y + y0) as usize * stride..][..stride];
            let row1 = &self.pixels[(rect.y + y1) as usize * stride..][..stride];
            for &(a, b, fx) in &columns {
                for c in 0..3 {
                    let (p00, p10) = (f32::from(row0[a + c]), f32::from(row0[b + c]));
                    let (p01, p11) = (f32::from(row1[a + c]), f32::from(row1[b + c]));
                    let top = p00 + fx * (p10 - p00);
                    let bottom = p01 + fx * (p11 - p01);
                    out.push(top + fy * (bottom - top));
                }
            }
        }
        out
    }
}

/// Per-channel mean and standard deviation in 0..255 units (ImageNet; flax/init2winit).
pub const MEAN_RGB: [f32; 3] = [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0];
pub const STDDEV_RGB: [f32; 3] = [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0];

/// Mirrors HWC values left-right in place.
pub fn flip_horizontal(hwc: &mut [f32], width: usize) {
    for row in hwc.chunks_mut(width * 3) {
        for x in 0..width / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (width - 1 - x) * 3 + c);
            }
        }
    }
}

/// HWC 0..255 values -> CHW normalised `(v - mean) / std`.
pub fn normalise_to_chw(hwc: &[f32], width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut chw = vec![0.0; hwc.len()];
    let (r, rest) = chw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = (px[0] - MEAN_RGB[0]) / STDDEV_RGB[0];
        g[i] = (px[1] - MEAN_RGB[1]) / STDDEV_RGB[1];
        b[i] = (px[2] - MEAN_RGB[2]) / STDDEV_RGB[2];
    }
    chw
}

/// The training transform: sampled crop, resize to `size`, flip with probability 1/2, normalise.
/// Returns CHW values.
pub fn train_transform(
    img: &Rgb,
    sampler: &CropSampler,
    size: u32,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let rect = sampler.sample(img.width, img.height, rng);
    let mut hwc = img.resize_region(rect, size, size);
    if rng.random::<bool>() {
        flip_horizontal(&mut hwc, size as usize);
    }
    normalise_to_chw(&hwc, size as usize, size as usize)
}

/// The evaluation transform: shorter side to `resize` (MLPerf: 256), central `size` crop (224),
/// normalise. Returns CHW values.
pub fn eval_transform(img: &Rgb, resize: u32, size: u32) -> Vec<f32> {
    let (w, h) = (img.width as f32, img.height as f32);
    let scale = resize as f32 / w.min(h);
    let (rw, rh) = ((w * scale).round() as u32, (h * scale).round() as u32);
    let resized = img.resize_region(
        Rect {
            x: 0,
            y: 0,
            width: img.width,
            height: img.height,
        },
        rw,
        rh,
    );
    let (ox, oy) = ((rw - size) / 2, (rh - size) / 2);
    let mut crop = Vec::with_capacity((size * size * 3) as usize);
    for y in oy..oy + size {
        let start = ((y * rw + ox) * 3) as usize;
        crop.extend_from_slice(&resized[start..start + (size * 3) as usize]);
    }
    normalise_to_chw(&crop, size as usize, size as usize)
}

/// Image files with labels: label = index of the class (WordNet id) in sorted order.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub classes: Vec<String>,
    pub files: Vec<(PathBuf, u32)>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpeg" | "jpg" | "png"))
}

impl ImageFolder {
    /// `dir/<wnid>/*.JPEG`. A missing directory, no class folders, or a class without images is an
    /// error naming the path.
    pub fn scan(dir: &Path) -> Result<Self> {
        let mut classes: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the image folder {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        classes.sort();
        if classes.is_empty() {
            bail!(
                "{}: no class folders (expected <wnid>/*.JPEG)",
                dir.display()
            );
        }
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let mut images: Vec<PathBuf> = std::fs::read_dir(dir.join(class))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                bail!("{}: class folder without images", dir.join(class).display());
            }
            images.sort();
            files.extend(images.into_iter().map(|p| (p, label as u32)));
        }
        Ok(Self { classes, files })
    }

    /// A flat validation folder with a labels file of `<file name> <wnid>` lines, labelled with
    /// the class order of the training folder (`classes`). Unknown wnids and missing files are
    /// errors naming the line.
    pub fn flat(dir: &Path, labels_file: &Path, classes: &[String]) -> Result<Self> {
        let index: BTreeMap<&str, u32> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let text = std::fs::read_to_string(labels_file)
            .with_context(|| format!("cannot read labels file {}", labels_file.display()))?;
        let mut files = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(wnid)) = (parts.next(), parts.next()) else {
                bail!(
                    "{}:{}: expected `<file> <wnid>`",
                    labels_file.display(),
                    n + 1
                );
            };
            let Some(&label) = index.get(wnid) else {
                bail!(
                    "{}:{}: unknown class `{wnid}` (not a folder of the training set)",
                    labels_file.display(),
                    n + 1
                );
            };
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{}:{}: no file {}",
                    labels_file.display(),
                    n + 1,
                    path.display()
                );
            }
            files.push((path, label));
        }
        if files.is_empty() {
            bail!("{}: no labelled images", labels_file.display());
        }
        Ok(Self {
            classes: classes.to_vec(),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Over many 500x375 crops: every crop lies in the image, covers 5%-100% of it (and at least
    /// min_object_covered), has aspect ratio within [0.75, 1.33] up to rounding, and the areas
    /// spread over the range (TF samples the height uniformly, so small areas are common).
    #[test]
    fn crop_statistics() {
        let s = CropSampler::mlperf();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (w, h) = (500u32, 375u32);
        let mut areas = Vec::new();
        for _ in 0..5000 {
            let r = s.sample(w, h, &mut rng);
            assert!(r.x + r.width <= w && r.y + r.height <= h, "{r:?}");
            let area = (r.width * r.height) as f64 / (w * h) as f64;
            assert!((0.05 - 1e-3..=1.0).contains(&area), "{r:?}");
            let aspect = r.width as f64 / r.height as f64;
            assert!(
                (0.75 - 0.01..=1.33 + 0.01).contains(&aspect)
                    || r == Rect {
                        x: 0,
                        y: 0,
                        width: w,
                        height: h
                    },
                "{r:?} aspect {aspect}"
            );
            areas.push(area);
        }
        let below = areas.iter().filter(|&&a| a < 0.3).count() as f64 / areas.len() as f64;
        let above = areas.iter().filter(|&&a| a > 0.7).count() as f64 / areas.len() as f64;
        assert!(below > 0.2 && above > 0.05, "below {below}, above {above}");
        let mean_x = areas.iter().sum::<f64>() / areas.len() as f64;
        assert!((0.25..0.6).contains(&mean_x), "mean area {mean_x}");
    }

    /// An impossible request falls back to the whole image.
    #[test]
    fn impossible_crop_uses_whole_image() {
        let s = CropSampler {
            aspect_ratio: (10.0, 20.0),
            area: (0.9, 1.0),
            ..CropSampler::mlperf()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        assert_eq!(
            s.sample(100, 100, &mut rng),
            Rect {
                x: 0,
                y: 0,
                width: 100,
                height: 100
            }
        );
    }

    /// 2x1 image (0 and 100 in every channel) resized to 4x1 with half-pixel centres: source
    /// x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1 -> 0, 25, 75, 100.
    #[test]
    fn bilinear_half_pixel() {
        let img = Rgb {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 100, 100, 100],
        };
        let out = img.resize_region(
            Rect {
                x: 0,
                y: 0,
                width: 2,
                height: 1,
            },
            4,
            1,
        );
        let red: Vec<f32> = out.iter().step_by(3).copied().collect();
        assert_eq!(red, vec![0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn flip_and_normalise() {
        // 2x1 pixels: (1,2,3), (4,5,6) -> flipped (4,5,6), (1,2,3).
        let mut hwc = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        flip_horizontal(&mut hwc, 2);
        assert_eq!(hwc, vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
        // The mean maps to 0 and mean + std to 1, per channel, in CHW order.
        let px = [
            MEAN_RGB[0],
            MEAN_RGB[1],
            MEAN_RGB[2],
            MEAN_RGB[0] + STDDEV_RGB[0],
            MEAN_RGB[1] + STDDEV_RGB[1],
            MEAN_RGB[2] + STDDEV_RGB[2],
        ];
        let chw = normalise_to_chw(&px, 2, 1);
        for (got, want) in chw.iter().zip([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-5, "{chw:?}");
        }
    }

    /// Folder layout with real JPEGs: sorted class order, a flat validation folder with labels,
    /// and clear errors for an empty class and an unknown wnid; transforms give 3x224x224.
    #[test]
    fn folders_and_transforms() {
        let root = std::env::temp_dir().join(format!("bigbatch-imagenet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (wnid, shade) in [("n02", 200u8), ("n01", 50u8)] {
            let dir = root.join("train").join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            let img = image::RgbImage::from_pixel(50, 40, image::Rgb([shade, shade, shade]));
            img.save(dir.join("a.JPEG")).unwrap();
        }
        let train = ImageFolder::scan(&root.join("train")).unwrap();
        assert_eq!(train.classes, vec!["n01", "n02"]);
        assert_eq!(train.files[0].1, 0);
        assert!(train.files[0].0.ends_with("n01/a.JPEG"));

        let val = root.join("val");
        std::fs::create_dir_all(&val).unwrap();
        std::fs::copy(&train.files[1].0, val.join("v1.JPEG")).unwrap();
        std::fs::write(root.join("labels.txt"), "v1.JPEG n02\n").unwrap();
        let v = ImageFolder::flat(&val, &root.join("labels.txt"), &train.classes).unwrap();
        assert_eq!(v.files[0].1, 1);
        std::fs::write(root.join("bad.txt"), "v1.JPEG n09\n").unwrap();
        let e = ImageFolder::flat(&val, &root.join("bad.txt"), &train.classes).unwrap_err();
        assert!(
            e.to_string().contains("bad.txt:1: unknown class `n09`"),
            "{e}"
        );
        std::fs::create_dir_all(root.join("train/n03")).unwrap();
        let e = ImageFolder::scan(&root.join("train")).unwrap_err();
        assert!(e.to_string().contains("class folder without images"), "{e}");
        assert!(ImageFolder::scan(&root.join("nope")).is_err());

        let img = Rgb::decode(&std::fs::read(&train.files[0].0).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (50, 40));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t = train_transform(&img, &CropSampler::mlperf(), 224, &mut rng);
        assert_eq!(t.len(), 3 * 224 * 224);
        let e = eval_transform(&img, 256, 224);
        assert_eq!(e.len(), 3 * 224 * 224);
        // A uniform grey image stays uniform (JPEG may shift the shade slightly).
        let want = (f32::from(img.pixels[0]) - MEAN_RGB[0]) / STDDEV_RGB[0];
        assert!(e[..224 * 224].iter().all(|v| (v - want).abs() < 0.05));
        assert!(Rgb::decode(b"not an image").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// Settings of the parallel loader.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Decoding threads.
    pub workers: usize,
    /// How many batches the workers may run ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    /// Output side (224).
    pub image_size: u32,
    /// Training transform (random crop and flip) or evaluation transform.
    pub train: bool,
}

/// A batch: CHW images back to back, and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Files that could not be read or decoded in an epoch, with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochReport {
    pub skipped: Vec<(PathBuf, String)>,
}

fn seed_for(seed: u64, epoch: u64, salt: u64) -> u64 {
    seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// One epoch of `folder` on `cfg.workers` threads with prefetch: the order is a shuffle seeded by
/// (seed, epoch) for training (file order for evaluation), and each image's random crop and flip
/// come from a generator seeded by (seed, epoch, position), so the batches are the same for any
/// number of workers. Corrupt or unreadable files are skipped (the batch is filled from the next
/// files, so every batch is full) and listed in the report; a last partial batch is dropped in
/// training and delivered in evaluation.
/// `consume` receives the batches in order.
pub fn load_epoch(
    folder: &ImageFolder,
    cfg: &LoaderConfig,
    epoch: u64,
    mut consume: impl FnMut(ImageBatch) -> Result<()>,
) -> Result<EpochReport> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    use rand_chacha::ChaCha8Rng;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex, mpsc};

    if cfg.batch_size == 0 || cfg.workers == 0 {
        bail!("loader: batch_size and workers must be positive");
    }
    let mut order: Vec<usize> = (0..folder.files.len()).collect();
    if cfg.train {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed_for(cfg.seed, epoch, 0)));
    }
    let sampler = CropSampler::mlperf();
    let next = AtomicUsize::new(0);
    // Workers may claim positions below `allowed` (consumed + prefetch window).
    let window = cfg.prefetch.max(1) * cfg.batch_size;
    let allowed = (Mutex::new(window), Condvar::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Vec<f32>, String>)>();
    let mut report = EpochReport::default();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..cfg.workers {
            let tx = tx.clone();
            let (order, next, allowed, done, sampler) = (&order, &next, &allowed, &done, &sampler);
            scope.spawn(move || {
                loop {
                    let pos = next.fetch_add(1, Ordering::SeqCst);
                    if pos >= order.len() {
                        return;
                    }
                    {
                        let (limit, cv) = allowed;
                        let mut l = limit.lock().unwrap_or_else(|e| e.into_inner());
                        while pos >= *l && !done.load(Ordering::SeqCst) {
                            l = cv.wait(l).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    let path = &folder.files[order[pos]].0;
                    let out = std::fs::read(path)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| Rgb::decode(&bytes).map_err(|e| e.to_string()))
                        .map(|img| {
                            if cfg.train {
                                let mut rng = ChaCha8Rng::seed_from_u64(seed_for(
                                    cfg.seed,
                                    epoch,
                                    pos as u64 + 1,
                                ));
                                train_transform(&img, sampler, cfg.image_size, &mut rng)
                            } else {
                                eval_transform(&img, cfg.image_size * 256 / 224, cfg.image_size)
                            }
                        });
                    if tx.send((pos, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        let mut batch = ImageBatch {
            images: Vec::new(),
            labels: Vec::new(),
        };
        let result = (|| -> Result<()> {
            for (pos, out) in rx.iter() {
                pending.insert(pos, out);
                while let Some(out) = pending.remove(&want) {
                    let (path, label) = &folder.files[order[want]];
                    match out {
                        Ok(chw) => {
                            batch.images.extend(chw);
                            batch.labels.push(*label);
                        }
                        Err(reason) => report.skipped.push((path.clone(), reason)),
                    }
                    want += 1;
                    {
                        let (limit, cv) = &allowed;
                        *limit.lock().unwrap_or_else(|e| e.into_inner()) = want + window;
                        cv.notify_all();
                    }
                    if batch.labels.len() == cfg.batch_size {
                        consume(std::mem::replace(
                            &mut batch,
                            ImageBatch {
                                images: Vec::new(),
                                labels: Vec::new(),
                            },
                        ))?;
                    }
                }
            }
            // Evaluation sees every image: the last partial batch is delivered too.
            if !cfg.train && !batch.labels.is_empty() {
                consume(batch)?;
            }
            Ok(())
        })();
        done.store(true, Ordering::SeqCst);
        allowed.1.notify_all();
        result
    })?;
    Ok(report)
}

#[cfg(test)]
mod loader_tests {
    use super::*;

    /// The fixture's root directory and the folder scanned from it.
    fn fixture(name: &str) -> (PathBuf, ImageFolder) {
        let root =
            std::env::temp_dir().join(format!("bigbatch-loader-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for c in 0..3u8 {
            let dir = root.join(format!("n0{c}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..5u8 {
                let img = image::RgbImage::from_fn(40 + u32::from(i), 30, |x, y| {
                    image::Rgb([c * 60 + i, (x * 5) as u8, (y * 7) as u8])
                });
                img.save(dir.join(format!("{i}.JPEG"))).unwrap();
            }
        }
        std::fs::write(root.join("n01/broken.JPEG"), b"not a jpeg").unwrap();
        let folder = ImageFolder::scan(&root).unwrap();
        (root, folder)
    }

    fn run(folder: &ImageFolder, workers: usize) -> (Vec<ImageBatch>, EpochReport) {
        let cfg = LoaderConfig {
            batch_size: 4,
            workers,
            prefetch: 1,
            seed: 9,
            image_size: 16,
            train: true,
        };
        let mut batches = Vec::new();
        let report = load_epoch(folder, &cfg, 2, |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        (batches, report)
    }

    /// 16 files, one corrupt: 15 images -> 3 full batches of 4 (3 left over, dropped), the corrupt
    /// file reported with its path, and the same batches with 1 and 3 workers.
    #[test]
    fn deterministic_across_workers_and_skips_corrupt_files() {
        let (root, folder) = fixture("a");
        assert_eq!(folder.files.len(), 16);
        let (one, report) = run(&folder, 1);
        let (three, report3) = run(&folder, 3);
        assert_eq!(one.len(), 3);
        assert!(
            one.iter()
                .all(|b| b.labels.len() == 4 && b.images.len() == 4 * 3 * 16 * 16)
        );
        assert_eq!(one, three);
        assert_eq!(report, report3);
        assert_eq!(report.skipped.len(), 1);
        assert!(report.skipped[0].0.ends_with("n01/broken.JPEG"));
        // Another epoch has another order.
        let cfg = LoaderConfig {
            batch_size: 4,
            workers: 2,
            prefetch: 2,
            seed: 9,
            image_size: 16,
            train: true,
        };
        let mut other = Vec::new();
        load_epoch(&folder, &cfg, 3, |b| {
            other.push(b);
            Ok(())
        })
        .unwrap();
        assert_ne!(one, other);
        std::fs::remove_dir_all(root).unwrap();
    }
}

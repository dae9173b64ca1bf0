//! The IDX format (LeCun et al., MNIST; also Fashion-MNIST): a big-endian header
//! `0x00 0x00 type ndim`, `ndim` u32 dimensions, then the data. Only unsigned bytes (`0x08`) are
//! used by these datasets. Files may be gzip-compressed (`.gz`).

use crate::ImageDataset;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A decoded IDX array of bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Decodes IDX bytes (gunzipping them first if they start with the gzip magic). `origin` names the
/// source in errors.
pub fn decode(bytes: &[u8], origin: &str) -> Result<IdxArray> {
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .with_context(|| format!("{origin}: invalid gzip data"))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        bail!("{origin}: not an IDX file (expected the magic 0x0000TTNN)");
    }
    if bytes[2] != 0x08 {
        bail!(
            "{origin}: IDX element type 0x{:02x} is not supported (expected 0x08, unsigned bytes)",
            bytes[2]
        );
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!("{origin}: truncated IDX header");
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let data = &bytes[header..];
    // Checked: a hostile header can name dimensions whose product overflows.
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        bail!(
            "{origin}: IDX dimensions {dims:?} need {} bytes of data, found {}",
            count.map_or("more than 2^64".to_string(), |c| c.to_string()),
            data.len()
        );
    }
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

/// Reads an IDX file (raw or gzip).
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes, &path.display().to_string())
}

/// Pairs an images array `[n, h, w]` with a labels array `[n]`.
pub fn to_dataset(images: IdxArray, labels: IdxArray, origin: &str) -> Result<ImageDataset> {
    if images.dims.len() != 3 {
        bail!(
            "{origin}: images must be 3-dimensional [n, h, w], got {:?}",
            images.dims
        );
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        bail!(
            "{origin}: {} labels for {} images",
            labels.dims.first().copied().unwrap_or(0),
            images.dims[0]
        );
    }
    if images.dims[0] == 0 {
        bail!("{origin}: the dataset is empty");
    }
    let num_classes = *labels.data.iter().max().unwrap_or(&0) as usize + 1;
    Ok(ImageDataset {
        channels: 1,
        height: images.dims[1],
        width: images.dims[2],
        images: images.data,
        labels: labels.data,
        num_classes: num_classes.max(10),
    })
}

const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../embedded/fashion-mnist/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../embedded/fashion-mnist/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../embedded/fashion-mnist/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../embedded/fashion-mnist/t10k-labels-idx1-ubyte.gz");

/// The embedded Fashion-MNIST subset: `(train, test)` with 10,000 and 2,000 examples.
pub fn embedded_fashion_mnist() -> Result<(ImageDataset, ImageDataset)> {
    let train = to_dataset(
        decode(EMBEDDED_TRAIN_IMAGES, "embedded train images")?,
        decode(EMBEDDED_TRAIN_LABELS, "embedded train labels")?,
        "embedded Fashion-MNIST train",
    )?;
    let test = to_dataset(
        decode(EMBEDDED_TEST_IMAGES, "embedded test images")?,
        decode(EMBEDDED_TEST_LABELS, "embedded test labels")?,
        "embedded Fashion-MNIST test",
    )?;
    Ok((train, test))
}

/// IDX bytes of unsigned-byte data (type 0x08) with dimensions `dims`, the layout [`decode`]
/// reads.
pub fn encode(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// Writes the first `train` training and `test` test images of the embedded subset as the four
/// standard IDX files in `dir` (a small data directory for `data.source: Idx(dir)`, e.g. so that
/// evaluation takes seconds on a software renderer).
pub fn write_embedded_subset(dir: &Path, train: usize, test: usize) -> Result<()> {
    let (train_set, test_set) = embedded_fashion_mnist()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (prefix, set, n) in [("train", &train_set, train), ("t10k", &test_set, test)] {
        let pixels = set.channels * set.height * set.width;
        if n > set.labels.len() {
            bail!(
                "the embedded {prefix} set has {} images, not {n}",
                set.labels.len()
            );
        }
        for (name, bytes) in [
            (
                format!("{prefix}-images-idx3-ubyte"),
                encode(
                    &[n as u32, set.height as u32, set.width as u32],
                    &set.images[..n * pixels],
                ),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte"),
                encode(&[n as u32], &set.labels[..n]),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for candidate in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{}: missing `{stem}` (or `{stem}.gz`); expected the four standard MNIST/Fashion-MNIST files",
        dir.display()
    )
}

/// Reads the standard four files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`) from `dir`.
pub fn load_dir(dir: &Path) -> Result<(ImageDataset, ImageDataset)> {
    if !dir.is_dir() {
        bail!("data directory {} does not exist", dir.display());
    }
    let load = |img: &str, lbl: &str| -> Result<ImageDataset> {
        let ip = find(dir, img)?;
        to_dataset(
            read(&ip)?,
            read(&find(dir, lbl)?)?,
            &ip.display().to_string(),
        )
    };
    Ok((
        load("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
        load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn decodes_raw_and_gzip() {
        let raw = idx(&[2, 1, 2], &[1, 2, 3, 4]);
        let a = decode(&raw, "raw").unwrap();
        assert_eq!(a.dims, vec![2, 1, 2]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let b = decode(&gz.finish().unwrap(), "gz").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_bad_files_with_their_name() {
        let err = decode(&idx(&[2, 2], &[1, 2, 3]), "f.idx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.idx") && err.contains("need 4 bytes"),
            "{err}"
        );
        // Dimensions whose product overflows are an error, not a panic.
        let huge = idx(&[16, 1 << 30, 1 << 30], &[0; 8]);
        let err = decode(&huge, "h.idx").unwrap_err().to_string();
        assert!(
            err.contains("h.idx") && err.contains("more than 2^64"),
            "{err}"
        );
        let err = decode(b"hello", "g.idx").unwrap_err().to_string();
        assert!(err.contains("g.idx"), "{err}");
        let err = to_dataset(
            decode(&idx(&[2, 1, 1], &[1, 2]), "i").unwrap(),
            decode(&idx(&[3], &[1, 2, 3]), "l").unwrap(),
            "pair",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("3 labels for 2 images"), "{err}");
    }

    #[test]
    fn embedded_subset_sizes_and_dir_reader() {
        let (train, test) = embedded_fashion_mnist().unwrap();
        assert_eq!((train.len(), test.len()), (10_000, 2_000));
        assert_eq!((train.height, train.width, train.num_classes), (28, 28, 10));
        // Every class is present in the subset.
        let mut counts = [0usize; 10];
        train.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");

        let dir = std::env::temp_dir().join(format!("bb-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(&[1, 1, 2], &[0, 9]),
        )
        .unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &idx(&[1], &[4])).unwrap();
            gz.finish().unwrap()
        })
        .unwrap();
        let err = load_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx(&[1, 1, 2], &[5, 6])).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[1], &[2])).unwrap();
        let (tr, te) = load_dir(&dir).unwrap();
        assert_eq!((tr.labels[0], te.images.clone()), (4, vec![5, 6]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load_dir(&dir).is_err());
    }
}

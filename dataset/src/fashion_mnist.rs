//! `semiclass demo-data fashion-mnist`: a real ClsLMSSLDataset folder built
//! from Debian's `dataset-fashion-mnist` (60k train / 10k test, 28x28 grey).

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// Where Debian's package puts the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Marks a folder this command built, with the settings it used.
const MARKER: &str = ".semiclass-demo-data.json";

/// How to split the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoOptions {
    /// Folder holding the four `*-idx*-ubyte.gz` files.
    pub source: PathBuf,
    /// Share of the non-validation train images that keep their label.
    pub labeled_frac: f64,
    /// Validation images, stratified, taken from the official train split.
    pub val_count: usize,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            source: PathBuf::from(DEBIAN_DIR),
            labeled_frac: 0.1,
            val_count: 5000,
            seed: 0,
        }
    }
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub train: usize,
    pub unlabeled: usize,
    pub val: usize,
    pub test: usize,
    /// False when the folder already held this exact dataset.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{path}: Fashion-MNIST not found; install it with 'apt-get install dataset-fashion-mnist' or pass --source DIR"
    )]
    SourceMissing { path: PathBuf },
    #[error("{path}: {message}")]
    BadSource { path: PathBuf, message: String },
    #[error(
        "{0}: exists and is not a dataset built by this command with the same settings; choose another folder (nothing was changed)"
    )]
    OutputExists(PathBuf),
    #[error("--labeled-frac must be in (0, 1], got {0}")]
    BadFraction(f64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One official split: 28x28 grey images (row-major) and their labels.
pub struct Split {
    pub images: Vec<[u8; 784]>,
    pub labels: Vec<u8>,
}

/// Builds the dataset at `out`. The folder is assembled under a temporary
/// name and renamed into place, so an interrupted run leaves nothing half-made;
/// an existing folder is never modified.
pub fn build(out: &Path, options: &DemoOptions) -> Result<DemoSummary, DemoError> {
    if !(options.labeled_frac > 0.0 && options.labeled_frac <= 1.0) {
        return Err(DemoError::BadFraction(options.labeled_frac));
    }
    if let Some(summary) = existing(out, options)? {
        return Ok(summary);
    }
    let train = read_split(&options.source, "train")?;
    let test = read_split(&options.source, "t10k")?;
    let plan = plan_splits(&train.labels, options);
    let partial = partial_dir(out);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(partial.join("images/train")).map_err(io(&partial))?;
    std::fs::create_dir_all(partial.join("images/test")).map_err(io(&partial))?;
    let result = write_all(&partial, &train, &test, &plan, options);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result?;
    if out.is_dir() {
        // Only an empty folder reaches here (see `existing`).
        std::fs::remove_dir(out).map_err(io(out))?;
    }
    std::fs::rename(&partial, out).map_err(io(out))?;
    Ok(DemoSummary {
        train: plan.labeled.len(),
        unlabeled: plan.unlabeled.len(),
        val: plan.val.len(),
        test: test.labels.len(),
        created: true,
    })
}

fn partial_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// `Some` when `out` already holds this dataset; an error when it holds
/// anything else; `None` when it is absent or empty.
fn existing(out: &Path, options: &DemoOptions) -> Result<Option<DemoSummary>, DemoError> {
    let Ok(mut entries) = std::fs::read_dir(out) else {
        return if out.exists() {
            Err(DemoError::OutputExists(out.into()))
        } else {
            Ok(None)
        };
    };
    if entries.next().is_none() {
        return Ok(None);
    }
    let marker: Option<(DemoOptions, [usize; 4])> = std::fs::read(out.join(MARKER))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match marker {
        Some((built, [train, unlabeled, val, test])) if built == *options => {
            Ok(Some(DemoSummary {
                train,
                unlabeled,
                val,
                test,
                created: false,
            }))
        }
        _ => Err(DemoError::OutputExists(out.into())),
    }
}

struct Plan {
    val: Vec<usize>,
    labeled: Vec<usize>,
    unlabeled: Vec<usize>,
}

/// Stratified split of the official train images into val / labeled / unlabeled.
fn plan_splits(labels: &[u8], options: &DemoOptions) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); CLASS_NAMES.len()];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(i);
    }
    for members in &mut by_class {
        members.shuffle(&mut rng);
    }
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let val_take = stratified_counts(&sizes, options.val_count.min(labels.len()));
    let rest: Vec<usize> = sizes.iter().zip(&val_take).map(|(n, v)| n - v).collect();
    let total_rest: usize = rest.iter().sum();
    let labeled_total = ((total_rest as f64) * options.labeled_frac).round() as usize;
    let labeled_take = stratified_counts(&rest, labeled_total);
    let mut plan = Plan {
        val: Vec::new(),
        labeled: Vec::new(),
        unlabeled: Vec::new(),
    };
    for (c, members) in by_class.iter().enumerate() {
        let (val, rest) = members.split_at(val_take[c]);
        let (labeled, unlabeled) = rest.split_at(labeled_take[c]);
        plan.val.extend(val);
        plan.labeled.extend(labeled);
        plan.unlabeled.extend(unlabeled);
    }
    for list in [&mut plan.val, &mut plan.labeled, &mut plan.unlabeled] {
        list.sort_unstable();
    }
    plan
}

/// Splits `total` across groups in proportion to `sizes`, exactly, by
/// largest remainder.
fn stratified_counts(sizes: &[usize], total: usize) -> Vec<usize> {
    let all: usize = sizes.iter().sum();
    if all == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&n| n as f64 * total as f64 / all as f64)
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let missing = total - counts.iter().sum::<usize>();
    for &i in order.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

fn write_all(
    dir: &Path,
    train: &Split,
    test: &Split,
    plan: &Plan,
    options: &DemoOptions,
) -> Result<(), DemoError> {
    write_pngs(dir, "train", train)?;
    write_pngs(dir, "test", test)?;
    let train_line = |&i: &usize| format!("{} {}\n", image_path("train", i), train.labels[i]);
    let lists = [
        (
            "label.txt",
            CLASS_NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{i} {n}\n"))
                .collect::<String>(),
        ),
        ("train.txt", plan.labeled.iter().map(train_line).collect()),
        ("val.txt", plan.val.iter().map(train_line).collect()),
        (
            "train_unlabeled.txt",
            plan.unlabeled
                .iter()
                .map(|&i| format!("{}\n", image_path("train", i)))
                .collect(),
        ),
        (
            "test.txt",
            (0..test.labels.len())
                .map(|i| format!("{} {}\n", image_path("test", i), test.labels[i]))
                .collect(),
        ),
    ];
    for (name, text) in lists {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|source| DemoError::Io { path, source })?;
    }
    let counts = [
        plan.labeled.len(),
        plan.unlabeled.len(),
        plan.val.len(),
        test.labels.len(),
    ];
    let marker = serde_json::to_vec_pretty(&(options, counts)).expect("marker serialises");
    let path = dir.join(MARKER);
    write_atomic(&path, &marker).map_err(|source| DemoError::Io { path, source })
}

fn image_path(split: &str, index: usize) -> String {
    format!("images/{split}/{index:05}.png")
}

fn write_pngs(dir: &Path, split: &str, data: &Split) -> Result<(), DemoError> {
    data.images
        .par_iter()
        .enumerate()
        .try_for_each(|(i, pixels)| {
            let path = dir.join(image_path(split, i));
            let image = image::GrayImage::from_raw(28, 28, pixels.to_vec()).expect("28x28 buffer");
            image
                .save_with_format(&path, image::ImageFormat::Png)
                .map_err(|e| DemoError::Io {
                    path,
                    source: std::io::Error::other(e),
                })
        })
}

/// Reads the official split `prefix` (`train` or `t10k`) from `source`
/// (e.g. [`DEBIAN_DIR`]).
pub fn read_split(source: &Path, prefix: &str) -> Result<Split, DemoError> {
    let images_path = source.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels_path = source.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let images = read_idx(&images_path, 0x0803)?;
    let labels = read_idx(&labels_path, 0x0801)?;
    let bad = |path: &Path, message: String| DemoError::BadSource {
        path: path.into(),
        message,
    };
    if images.dims.get(1..) != Some(&[28, 28]) {
        return Err(bad(
            &images_path,
            format!("expected 28x28 images, found dimensions {:?}", images.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(bad(
            &labels_path,
            format!("{} labels for {} images", labels.dims[0], images.dims[0]),
        ));
    }
    if let Some(l) = labels
        .data
        .iter()
        .find(|&&l| l as usize >= CLASS_NAMES.len())
    {
        return Err(bad(
            &labels_path,
            format!("label {l} is not a Fashion-MNIST class (0..9)"),
        ));
    }
    let images = images
        .data
        .chunks_exact(784)
        .map(|c| c.try_into().expect("784 bytes"))
        .collect();
    Ok(Split {
        images,
        labels: labels.data,
    })
}

#[derive(Debug)]
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads a gzip-compressed IDX file of unsigned bytes.
fn read_idx(path: &Path, magic: u32) -> Result<Idx, DemoError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DemoError::SourceMissing { path: path.into() },
        _ => DemoError::Io {
            path: path.into(),
            source: e,
        },
    })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| DemoError::BadSource {
            path: path.into(),
            message: format!("not a gzip file: {e}"),
        })?;
    parse_idx(&bytes, magic).map_err(|message| DemoError::BadSource {
        path: path.into(),
        message,
    })
}

fn parse_idx(bytes: &[u8], magic: u32) -> Result<Idx, String> {
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_be_bytes(w.try_into().expect("4 bytes")))
    };
    let found = word(0).ok_or("file too short for an IDX header")?;
    if found != magic {
        return Err(format!("IDX magic {found:#010x}, expected {magic:#010x}"));
    }
    let rank = (magic & 0xff) as usize;
    let dims: Vec<usize> = (1..=rank)
        .map(|i| word(i).map(|d| d as usize).ok_or("truncated IDX header"))
        .collect::<Result<_, _>>()?;
    let start = 4 * (rank + 1);
    let len: usize = dims.iter().product();
    let data = bytes
        .get(start..start + len)
        .ok_or("IDX data shorter than its header says")?;
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_counts_are_exact_and_proportional() {
        assert_eq!(stratified_counts(&[6000; 10], 5000), vec![500; 10]);
        let counts = stratified_counts(&[10, 20, 31], 7);
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert_eq!(counts, vec![1, 2, 4]);
    }

    #[test]
    fn plan_is_stratified_disjoint_and_seeded() {
        let labels: Vec<u8> = (0..2000).map(|i| (i % 10) as u8).collect();
        let options = DemoOptions {
            val_count: 100,
            labeled_frac: 0.1,
            ..DemoOptions::default()
        };
        let plan = plan_splits(&labels, &options);
        assert_eq!(plan.val.len(), 100);
        assert_eq!(plan.labeled.len(), 190);
        assert_eq!(plan.unlabeled.len(), 1710);
        for c in 0..10u8 {
            assert_eq!(plan.val.iter().filter(|&&i| labels[i] == c).count(), 10);
            assert_eq!(plan.labeled.iter().filter(|&&i| labels[i] == c).count(), 19);
        }
        let mut all: Vec<usize> = plan
            .val
            .iter()
            .chain(&plan.labeled)
            .chain(&plan.unlabeled)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2000);
        assert_eq!(plan_splits(&labels, &options).labeled, plan.labeled);
        let other = plan_splits(&labels, &DemoOptions { seed: 1, ..options });
        assert_ne!(other.labeled, plan.labeled);
    }

    #[test]
    fn idx_header_is_validated() {
        let mut bytes = vec![0, 0, 8, 1, 0, 0, 0, 3];
        bytes.extend([1, 2, 3]);
        assert_eq!(parse_idx(&bytes, 0x0801).unwrap().data, vec![1, 2, 3]);
        assert!(
            parse_idx(&bytes[..9], 0x0801)
                .unwrap_err()
                .contains("shorter")
        );
        assert!(parse_idx(&bytes, 0x0803).unwrap_err().contains("magic"));
    }
}

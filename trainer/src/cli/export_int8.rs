//! The int8 options of `semiclass export` and the images they pick: the
//! calibration images, and the val images left for evaluating both graphs
//! (never one used for calibration).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use semiclass_dataset::Dataset;
use semiclass_dataset::lists::content_lines;
use semiclass_dataset::paths::{RelPath, normalize};
use semiclass_dataset::problem::Problems;
use semiclass_exporter::int8::{DEFAULT_METHOD, Int8Images, Int8Request};
use semiclass_exporter::quantize::RangeMethod;
use semiclass_manifest::checkpoint::CheckpointMeta;

/// Top-1 points an int8 model may lose before the export refuses it.
const MAX_DROP_POINTS: f64 = 1.0;

#[derive(Debug, Args)]
pub struct Int8Args {
    /// The dataset folder whose images calibrate the int8 model and whose
    /// val.txt evaluates both models (with --precision int8).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Calibration images: `train` (train.txt + train_unlabeled.txt), `val`
    /// (then evaluated on the other val images) or a FILE listing image
    /// paths relative to --data, one a line.
    #[arg(long, default_value = "train", value_name = "train|val|FILE")]
    calibration: String,
    /// How many calibration images, spread evenly over the list.
    #[arg(long, default_value_t = 200, value_name = "N")]
    calibration_images: usize,
    /// How activation ranges are chosen: min-max, percentile (99.999),
    /// percentile:P or entropy [default: percentile].
    #[arg(long, value_parser = parse_method, value_name = "METHOD")]
    calibration_method: Option<RangeMethod>,
}

fn parse_method(text: &str) -> Result<RangeMethod, String> {
    RangeMethod::parse(text).ok_or_else(|| {
        format!("unknown calibration method '{text}'; min-max, percentile, percentile:P or entropy")
    })
}

/// What the int8 export of the checkpoint `meta` is asked to do; `force`
/// packages a model that loses more than the allowed points.
pub fn int8_request(
    args: &Int8Args,
    meta: &CheckpointMeta,
    force: bool,
) -> anyhow::Result<Int8Request> {
    let Some(root) = &args.data else {
        bail!("--precision int8 calibrates and evaluates on a dataset: pass --data DIR");
    };
    let data = Dataset::open(root)?;
    if data.classes != meta.class_names {
        bail!(
            "{}: its classes ({}) are not the checkpoint's ({})",
            root.display(),
            data.classes.join(", "),
            meta.class_names.join(", ")
        );
    }
    let (pool, calibration_source) = calibration_pool(&data, &args.calibration)?;
    let calibration = spread(&pool, args.calibration_images);
    let chosen: HashSet<&RelPath> = calibration.iter().copied().collect();
    let evaluation: Vec<(PathBuf, usize)> = data
        .val
        .iter()
        .filter(|e| !chosen.contains(&e.path))
        .map(|e| (e.path.under(&data.root), e.class_id))
        .collect();
    let left_out = data.val.len() - evaluation.len();
    let evaluation_source = match left_out {
        0 => "val.txt".to_string(),
        n => format!("val.txt without its {n} calibration images"),
    };
    Ok(Int8Request {
        images: Int8Images {
            calibration: calibration.iter().map(|p| p.under(&data.root)).collect(),
            calibration_source,
            evaluation,
            evaluation_source,
        },
        method: args.calibration_method.unwrap_or(DEFAULT_METHOD),
        max_drop_points: MAX_DROP_POINTS,
        force,
    })
}

/// The images `--calibration` names, and how the manifest names them.
fn calibration_pool(data: &Dataset, which: &str) -> anyhow::Result<(Vec<RelPath>, String)> {
    Ok(match which {
        "train" => {
            let labeled = data.train.iter().map(|e| e.path.clone());
            let unlabeled = data.unlabeled.iter().map(|e| e.path.clone());
            let paths = labeled.chain(unlabeled).collect();
            (paths, "train.txt + train_unlabeled.txt".into())
        }
        "val" => (
            data.val.iter().map(|e| e.path.clone()).collect(),
            "val.txt".into(),
        ),
        file => (read_list(Path::new(file))?, file.to_string()),
    })
}

/// A list of image paths, one a line; every bad line is reported at once.
fn read_list(path: &Path) -> anyhow::Result<Vec<RelPath>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let shown = path.display().to_string();
    let mut problems = Problems::default();
    let mut paths = Vec::new();
    let mut bad = Vec::new();
    for (line, text) in content_lines(&shown, &bytes, &mut problems) {
        match normalize(&text) {
            Ok(p) => paths.push(p),
            Err(e) => bad.push(format!("{shown}:{line}: {e}")),
        }
    }
    bad.extend(problems.iter().map(|p| p.to_string()));
    if !bad.is_empty() {
        bail!("{}", bad.join("\n"));
    }
    Ok(paths)
}

/// `n` items spread evenly over `pool` (all of it when it is smaller), so
/// that a list sorted by class still gives every class its share.
fn spread<T>(pool: &[T], n: usize) -> Vec<&T> {
    let n = n.min(pool.len());
    (0..n).map(|i| &pool[i * pool.len() / n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_takes_every_part_of_the_list() {
        let pool: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&pool, 5), [&0, &2, &4, &6, &8]);
        assert_eq!(spread(&pool, 20).len(), 10);
        assert!(spread(&pool, 0).is_empty());
    }

    fn dataset(dir: &Path) -> PathBuf {
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("label.txt", "0 a\n1 b\n");
        write("train.txt", "t0.png 0\nt1.png 1\n");
        write("train_unlabeled.txt", "u0.png\n");
        write("val.txt", "v0.png 0\nv1.png 1\nv2.png 1\nv3.png 0\n");
        dir.to_path_buf()
    }

    fn args(dir: &Path, calibration: &str, n: usize) -> Int8Args {
        Int8Args {
            data: Some(dir.to_path_buf()),
            calibration: calibration.into(),
            calibration_images: n,
            calibration_method: None,
        }
    }

    fn meta() -> CheckpointMeta {
        let spec = semiclass_manifest::PreprocessSpec::for_input(8, [0.5; 3], [0.5; 3]);
        CheckpointMeta::untrained("lcnet_050", vec!["a".into(), "b".into()], 8, spec, "test")
    }

    #[test]
    fn evaluation_never_sees_a_calibration_image() {
        let dir = tempfile::tempdir().unwrap();
        let root = dataset(dir.path());
        let req = int8_request(&args(&root, "train", 10), &meta(), false).unwrap();
        let images = &req.images;
        assert_eq!(images.calibration.len(), 3);
        assert_eq!(
            (images.evaluation.len(), images.evaluation_source.as_str()),
            (4, "val.txt")
        );

        let req = int8_request(&args(&root, "val", 2), &meta(), false).unwrap();
        let images = &req.images;
        let names = |paths: Vec<&PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(images.calibration.iter().collect()),
            ["v0.png", "v2.png"]
        );
        assert_eq!(
            names(images.evaluation.iter().map(|(p, _)| p).collect()),
            ["v1.png", "v3.png"]
        );
        assert_eq!(images.evaluation[1].1, 0);
        assert_eq!(
            images.evaluation_source,
            "val.txt without its 2 calibration images"
        );
    }

    #[test]
    fn bad_lists_and_missing_data_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dataset(dir.path());
        let list = root.join("calib.txt");
        std::fs::write(&list, "ok.png\n../out.png\n").unwrap();
        let err = int8_request(&args(&root, list.to_str().unwrap(), 5), &meta(), false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:2: ", list.display())), "{err}");
        let mut no_data = args(&root, "train", 5);
        no_data.data = None;
        let err = int8_request(&no_data, &meta(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--data DIR"), "{err}");
        let mut other = meta();
        other.class_names = vec!["x".into(), "y".into()];
        let err = int8_request(&args(&root, "train", 5), &other, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the checkpoint's"), "{err}");
    }
}

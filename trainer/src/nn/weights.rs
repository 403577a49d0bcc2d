//! Weight files: `.safetensors` in timm's names, so timm and Hugging Face
//! files load as pretrained weights without renaming.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use semiclass_models::ResizableGrid;
use tch::{Kind, Tensor};

use super::network::Network;

/// What loading did besides copying tensors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Classifier tensors left freshly initialised because the file was
    /// trained for another number of classes.
    pub skipped_head: Vec<String>,
    /// Grid parameters resampled because the file was made for another
    /// input size, e.g. `pos_embed 14x14 -> 2x2`.
    pub resampled: Vec<String>,
}

/// A weight file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read as safetensors: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: cannot write: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path}: does not fit {model}: {details}")]
    Mismatch {
        path: PathBuf,
        model: String,
        details: String,
    },
}

/// PyTorch's BatchNorm counter: in every timm state dict, used by no forward pass.
fn ignored(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// Copies every tensor of `path` into `net`, after checking that names and
/// shapes match exactly (the classifier may differ in class count). Nothing
/// is changed when anything does not match.
pub fn load(net: &mut Network, path: &Path) -> Result<LoadReport, WeightsError> {
    let file: Vec<(String, Tensor)> =
        Tensor::read_safetensors(path).map_err(|e| WeightsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    load_named(net, file, path)
}

/// As [`load`], from tensors already in memory (a resume state); `source`
/// names them in errors.
pub fn load_named(
    net: &mut Network,
    tensors: Vec<(String, Tensor)>,
    source: &Path,
) -> Result<LoadReport, WeightsError> {
    let file: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| !ignored(name))
        .collect();
    let plan = plan(net, &file).map_err(|details| WeightsError::Mismatch {
        path: source.to_path_buf(),
        model: net.model.entry.name.to_string(),
        details,
    })?;
    tch::no_grad(|| {
        for name in &plan.copy {
            let dst = net.var(name).expect("planned from the model's own names");
            let src = file[name].to_kind(Kind::Float).to_device(dst.device());
            dst.shallow_clone().copy_(&src);
        }
        for r in &plan.resample {
            let dst = net
                .var(&r.grid.name)
                .expect("planned from the model's own names");
            let src = file[&r.grid.name]
                .to_kind(Kind::Float)
                .to_device(dst.device());
            dst.shallow_clone()
                .copy_(&resample_grid(&src, &r.grid, r.from));
        }
    });
    Ok(LoadReport {
        loaded: plan.copy.len() + plan.resample.len(),
        skipped_head: plan.skipped_head,
        resampled: plan.resample.iter().map(Resample::describe).collect(),
    })
}

struct Plan {
    copy: Vec<String>,
    skipped_head: Vec<String>,
    resample: Vec<Resample>,
}

/// A grid parameter of the file that fits the model once resampled.
struct Resample {
    grid: ResizableGrid,
    /// The file's square grid side.
    from: usize,
}

impl Resample {
    /// `grid` from the file's shape when it is the same parameter made for
    /// another input size: same prefix and width, a square grid of rows.
    fn fits(grid: &ResizableGrid, src: &[i64], dst: &[i64]) -> Option<Resample> {
        let prefix = grid.prefix_tokens as i64;
        let same_layout = src.len() == 3 && dst.len() == 3 && src[0] == 1 && src[2] == dst[2];
        let rows = src.get(1)? - prefix;
        let side = (rows.max(0) as f64).sqrt().round() as i64;
        (same_layout && rows > 0 && side * side == rows).then(|| Resample {
            grid: grid.clone(),
            from: side as usize,
        })
    }

    fn describe(&self) -> String {
        let [h, w] = self.grid.grid;
        format!("{} {f}x{f} -> {h}x{w}", self.grid.name, f = self.from)
    }
}

/// timm's `resample_abs_pos_embed` as its checkpoint filter calls it when
/// pretrained weights meet another `img_size`: the prefix rows (class token)
/// unchanged, the `[from, from]` grid resized bicubically with antialiasing
/// (`F.interpolate(mode='bicubic', antialias=True, align_corners=False)`).
fn resample_grid(src: &Tensor, grid: &ResizableGrid, from: usize) -> Tensor {
    let (prefix, from) = (grid.prefix_tokens as i64, from as i64);
    let dim = src.size()[2];
    let [h, w] = grid.grid.map(|v| v as i64);
    let rows = src
        .narrow(1, prefix, from * from)
        .reshape([1, from, from, dim])
        .permute([0, 3, 1, 2]);
    // Antialiasing also changes upsampling: PyTorch's antialiased bicubic
    // uses PIL's kernel (a = -0.5), the plain one a = -0.75.
    let resized = rows
        .internal_upsample_bicubic2d_aa([h, w], false, None, None)
        .permute([0, 2, 3, 1])
        .reshape([1, h * w, dim]);
    Tensor::cat(&[src.narrow(1, 0, prefix), resized], 1)
}

/// Decides what to copy; on any mismatch, one message listing all of them.
fn plan(net: &Network, file: &HashMap<String, Tensor>) -> Result<Plan, String> {
    let head: Vec<&str> = net
        .model
        .head_params()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let grids = net.model.resizable_grids();
    let resample = |name: &str, src: &Tensor, dst: &Tensor| {
        let grid = grids.iter().find(|g| g.name == name)?;
        Resample::fits(grid, &src.size(), &dst.size())
    };
    let mut plan = Plan {
        copy: Vec::new(),
        skipped_head: Vec::new(),
        resample: Vec::new(),
    };
    let (mut missing, mut wrong_shape) = (Vec::new(), Vec::new());
    for (name, dst) in net.named_tensors() {
        match file.get(name) {
            None => missing.push(name.to_string()),
            Some(src) if src.size() == dst.size() => plan.copy.push(name.to_string()),
            Some(_) if head.contains(&name) => plan.skipped_head.push(name.to_string()),
            Some(src) => match resample(name, src, dst) {
                Some(r) => plan.resample.push(r),
                None => {
                    wrong_shape.push(format!("{name} {:?} (model {:?})", src.size(), dst.size()))
                }
            },
        }
    }
    let mut unexpected: Vec<&str> = file
        .keys()
        .map(String::as_str)
        .filter(|k| net.var(k).is_none())
        .collect();
    unexpected.sort();
    let mut problems = Vec::new();
    for (what, list) in [
        (
            "missing",
            missing.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        ("unexpected", unexpected),
        (
            "wrong shape",
            wrong_shape.iter().map(String::as_str).collect(),
        ),
    ] {
        if !list.is_empty() {
            problems.push(format!("{} {what}: {}", list.len(), abbreviate(&list)));
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems.join("; ") + "; is it a timm state dict of this model?")
    }
}

fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    text
}

/// Writes all tensors to `path` via a temporary file and a rename, so a
/// failed write leaves any previous file intact.
pub fn save(net: &Network, path: &Path) -> Result<(), WeightsError> {
    let error = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let tensors: Vec<(&str, Tensor)> = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    Tensor::write_safetensors(&tensors, &tmp).map_err(|e| error(e.to_string()))?;
    let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
    synced
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            error(e.to_string())
        })
}

//! A frozen teacher: a checkpoint loaded for inference only.

use std::path::{Path, PathBuf};

use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::{CheckpointMeta, TeacherRef};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::sha256_file;
use crate::engine::TrainError;
use crate::engine::setup::network_from_checkpoint;
use crate::nn::Network;

/// A checkpoint's network in eval mode, never updated.
pub struct Teacher {
    pub net: Network,
    pub meta: CheckpointMeta,
    pub path: PathBuf,
    /// Of the checkpoint file, lowercase hex: part of every cache key.
    pub sha256: String,
}

impl Teacher {
    /// Loads `path` and checks that it predicts the dataset's classes.
    pub fn load(path: &Path, classes: &[String], device: Device) -> Result<Teacher, TrainError> {
        let (net, meta) = network_from_checkpoint(path, device)?;
        if meta.class_names != classes {
            return Err(TrainError::Teacher(format!(
                "{}: the teacher predicts {} classes ({}) but this dataset's label.txt has {} ({}); distill from a teacher trained on this dataset",
                path.display(),
                meta.class_names.len(),
                preview(&meta.class_names),
                classes.len(),
                preview(classes),
            )));
        }
        let sha256 = sha256_file(path)?;
        Ok(Teacher {
            net,
            meta,
            path: path.to_path_buf(),
            sha256,
        })
    }

    /// What a student's checkpoint records about its teacher.
    pub fn reference(&self) -> TeacherRef {
        TeacherRef {
            path: self.path.display().to_string(),
            sha256: self.sha256.clone(),
        }
    }

    /// Probabilities at temperature `t` for a batch already in the
    /// teacher's input format.
    pub fn probs(&self, x: &Tensor, t: f64) -> Tensor {
        tch::no_grad(|| (self.net.forward(x, false) / t).softmax(-1, Kind::Float))
    }
}

fn preview(names: &[String]) -> String {
    let mut shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        shown.push_str(", ...");
    }
    shown
}

/// Turns a batch normalised and sized for the student into the teacher's
/// input: re-normalised with the teacher's mean/std and resized to its
/// input side (online distillation shows the teacher the student's view).
#[derive(Debug, Clone)]
pub struct InputAdapter {
    student: PreprocessSpec,
    teacher: PreprocessSpec,
}

impl InputAdapter {
    pub fn new(student: &PreprocessSpec, teacher: &PreprocessSpec) -> Self {
        InputAdapter {
            student: student.clone(),
            teacher: teacher.clone(),
        }
    }

    pub fn apply(&self, x: &Tensor) -> Tensor {
        let (s, t) = (&self.student, &self.teacher);
        let mut y = x.shallow_clone();
        if s.mean != t.mean || s.std != t.std {
            let column = |v: [f32; 3]| {
                Tensor::from_slice(&v)
                    .reshape([1, 3, 1, 1])
                    .to_device(x.device())
            };
            y = (y * column(s.std) + column(s.mean) - column(t.mean)) / column(t.std);
        }
        if s.crop != t.crop {
            let side = t.crop as i64;
            y = y.upsample_bilinear2d([side, side], false, None, None);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_renormalises_and_resizes() {
        let student = PreprocessSpec::for_input(32, [0.5; 3], [0.5; 3]);
        let teacher = PreprocessSpec::for_input(64, [0.0; 3], [1.0; 3]);
        // Student-normalised zeros are pixel value 0.5.
        let x = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = InputAdapter::new(&student, &teacher).apply(&x);
        assert_eq!(y.size(), [2, 3, 64, 64]);
        let mean = y.mean(Kind::Float).double_value(&[]);
        assert!((mean - 0.5).abs() < 1e-6, "{mean}");
        let same = InputAdapter::new(&student, &student).apply(&x);
        assert_eq!(same.size(), [2, 3, 32, 32]);
    }
}

//! A dataset opened for training: every list rule holds; images are decoded
//! later by whoever trains or evaluates (a broken image then names itself).

use std::path::{Path, PathBuf};

use crate::check::{rules, stats};
use crate::lists::{LabeledEntry, UnlabeledEntry};
use crate::load::ListSet;
use crate::problem::{Problem, Problems, Severity};

/// The lists of a dataset that passed the list rules of `semiclass check`.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    /// Indexed by class id.
    pub classes: Vec<String>,
    pub train: Vec<LabeledEntry>,
    pub unlabeled: Vec<UnlabeledEntry>,
    pub val: Vec<LabeledEntry>,
    /// `test.txt`, when the dataset has one.
    pub test: Option<Vec<LabeledEntry>>,
}

/// The dataset cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: not a dataset folder: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{root}: {} error(s) in the lists; run `semiclass check {root}` for the full report:\n{}", errors.len(), summary(errors))]
    Invalid { root: String, errors: Vec<Problem> },
}

fn summary(errors: &[Problem]) -> String {
    const SHOWN: usize = 10;
    let mut lines: Vec<String> = errors
        .iter()
        .take(SHOWN)
        .map(|p| format!("  {p}"))
        .collect();
    if errors.len() > SHOWN {
        lines.push(format!("  ... and {} more", errors.len() - SHOWN));
    }
    lines.join("\n")
}

impl Dataset {
    /// Reads the lists and applies the same list rules as `semiclass check`
    /// (without decoding images); any error refuses the dataset.
    pub fn open(root: &Path) -> Result<Dataset, OpenError> {
        let root = root.canonicalize().map_err(|source| OpenError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        let mut problems = Problems::default();
        let lists = ListSet::read(&root, &mut problems);
        rules::check_lists(&lists, &mut problems);
        let classes = lists.labels.as_ref().map(|l| l.names()).unwrap_or_default();
        let counts = stats::count(&lists, classes.len());
        stats::check_counts(
            &lists,
            &counts,
            stats::BalanceRules {
                imbalance_ratio: f64::INFINITY,
            },
            &mut problems,
        );
        let errors: Vec<Problem> = problems
            .into_sorted()
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        if !errors.is_empty() {
            return Err(OpenError::Invalid {
                root: root.display().to_string(),
                errors,
            });
        }
        Ok(Dataset {
            root,
            classes,
            train: lists.train.unwrap_or_default(),
            unlabeled: lists.unlabeled.unwrap_or_default(),
            val: lists.val.unwrap_or_default(),
            test: lists.test,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_valid_dataset_opens_without_decoding_images() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "label.txt", "0 cat\n1 dog\n");
        write(dir.path(), "train.txt", "a.png 0\nb.png 1\n");
        write(dir.path(), "train_unlabeled.txt", "c.png\n");
        write(dir.path(), "val.txt", "d.png 1\n");
        let data = Dataset::open(dir.path()).unwrap();
        assert_eq!(data.classes, ["cat", "dog"]);
        assert_eq!(data.train.len(), 2);
        assert_eq!(data.unlabeled.len(), 1);
        assert!(data.test.is_none());
    }

    #[test]
    fn list_errors_refuse_the_dataset_and_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "label.txt", "0 cat\n");
        write(dir.path(), "train.txt", "a.png 0\na.png 3\n");
        write(dir.path(), "train_unlabeled.txt", "");
        write(dir.path(), "val.txt", "a.png 0\n");
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("error(s) in the lists; run `semiclass check"),
            "{err}"
        );
        assert!(
            err.contains("train.txt:2: error: class id 3 is not defined"),
            "{err}"
        );
        assert!(
            err.contains("val.txt:1: error: a.png is also in train.txt:1"),
            "{err}"
        );
    }
}

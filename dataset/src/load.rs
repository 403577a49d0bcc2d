//! Reading the list files of a dataset folder.

use std::path::Path;

use crate::lists::{self, LabeledEntry, Labels, UnlabeledEntry};
use crate::problem::{Location, Problems};

/// Everything the list files say, before any image is opened. A list is
/// `None` when its file could not be read (the problem is recorded).
#[derive(Debug, Default)]
pub struct ListSet {
    pub labels: Option<Labels>,
    pub train: Option<Vec<LabeledEntry>>,
    pub unlabeled: Option<Vec<UnlabeledEntry>>,
    pub val: Option<Vec<LabeledEntry>>,
    /// `test.txt` is optional: evaluation only, never used to pick checkpoints.
    pub test: Option<Vec<LabeledEntry>>,
}

impl ListSet {
    /// Reads and parses every list file under `root`, recording problems.
    pub fn read(root: &Path, problems: &mut Problems) -> ListSet {
        let labels = read_required(root, lists::LABEL_FILE, problems)
            .map(|bytes| lists::parse_labels(&bytes, problems));
        let labeled = |file: &str, problems: &mut Problems| {
            read_required(root, file, problems)
                .map(|bytes| lists::parse_labeled(file, &bytes, labels.as_ref(), problems))
        };
        let train = labeled(lists::TRAIN_FILE, problems);
        let val = labeled(lists::VAL_FILE, problems);
        let test = read_optional(root, lists::TEST_FILE, problems)
            .map(|bytes| lists::parse_labeled(lists::TEST_FILE, &bytes, labels.as_ref(), problems));
        let unlabeled = read_required(root, lists::UNLABELED_FILE, problems)
            .map(|bytes| lists::parse_unlabeled(&bytes, problems));
        ListSet {
            labels,
            train,
            unlabeled,
            val,
            test,
        }
    }
}

fn read_required(root: &Path, file: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    let path = root.join(file);
    if !path.exists() {
        problems.error(
            &Location::file(file),
            "missing-list-file",
            format!("missing list file: create {file} in the dataset folder (see the dataset format in README.md)"),
        );
        return None;
    }
    read(root, file, problems)
}

fn read_optional(root: &Path, file: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    root.join(file)
        .exists()
        .then(|| read(root, file, problems))
        .flatten()
}

fn read(root: &Path, file: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    match std::fs::read(root.join(file)) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.error(
                &Location::file(file),
                "unreadable-list-file",
                format!("cannot read: {e}"),
            );
            None
        }
    }
}

//! Rules that relate the lists to each other: the same image labeled twice,
//! validation images that are also trained on, and so on.

use std::collections::HashMap;

use crate::lists::{self, LabeledEntry, UnlabeledEntry};
use crate::load::ListSet;
use crate::paths::RelPath;
use crate::problem::{Location, Problems};

/// First place each image appears in one list, with its label if any.
type Seen = HashMap<RelPath, (usize, Option<usize>)>;

/// Applies every cross-list rule.
pub fn check_lists(lists: &ListSet, problems: &mut Problems) {
    let train = lists
        .train
        .as_deref()
        .map(|e| labeled_seen(lists::TRAIN_FILE, e, problems));
    let val = lists
        .val
        .as_deref()
        .map(|e| labeled_seen(lists::VAL_FILE, e, problems));
    let test = lists
        .test
        .as_deref()
        .map(|e| labeled_seen(lists::TEST_FILE, e, problems));
    let unlabeled = lists
        .unlabeled
        .as_deref()
        .map(|e| unlabeled_seen(e, problems));

    // Training on an image that also validates or tests it makes the
    // accuracy that picks or reports a model meaningless: an error.
    overlap(
        lists::VAL_FILE,
        &val,
        lists::TRAIN_FILE,
        &train,
        problems,
        Overlap::Error(
            "an image used for validation must not also be trained on; remove it from one list",
        ),
    );
    overlap(
        lists::TEST_FILE,
        &test,
        lists::TRAIN_FILE,
        &train,
        problems,
        Overlap::Error("a test image must not also be trained on; remove it from one list"),
    );
    overlap(
        lists::UNLABELED_FILE,
        &unlabeled,
        lists::TRAIN_FILE,
        &train,
        problems,
        Overlap::Warning(
            "the image is labeled, so it is used as labeled data; drop it from train_unlabeled.txt",
        ),
    );
    overlap(
        lists::UNLABELED_FILE,
        &unlabeled,
        lists::VAL_FILE,
        &val,
        problems,
        Overlap::Warning(
            "training on validation images, even unlabeled, makes val accuracy optimistic",
        ),
    );
    overlap(
        lists::UNLABELED_FILE,
        &unlabeled,
        lists::TEST_FILE,
        &test,
        problems,
        Overlap::Warning("training on test images, even unlabeled, makes test accuracy optimistic"),
    );
    overlap(
        lists::TEST_FILE,
        &test,
        lists::VAL_FILE,
        &val,
        problems,
        Overlap::Warning(
            "the same image validates and tests; test accuracy is then not independent",
        ),
    );
}

enum Overlap {
    Error(&'static str),
    Warning(&'static str),
}

/// Reports every image of `file` that also appears in `other_file`.
fn overlap(
    file: &str,
    seen: &Option<Seen>,
    other_file: &str,
    other: &Option<Seen>,
    problems: &mut Problems,
    kind: Overlap,
) {
    let (Some(seen), Some(other)) = (seen, other) else {
        return;
    };
    let mut hits: Vec<(usize, &RelPath, usize)> = seen
        .iter()
        .filter_map(|(path, (line, _))| other.get(path).map(|(o, _)| (*line, path, *o)))
        .collect();
    hits.sort();
    for (line, path, other_line) in hits {
        let at = Location::line(file, line);
        let message = |why: &str| format!("{path} is also in {other_file}:{other_line}: {why}");
        match kind {
            Overlap::Error(why) => problems.error(&at, "image-in-two-splits", message(why)),
            Overlap::Warning(why) => problems.warning(&at, "image-in-two-splits", message(why)),
        }
    }
}

fn labeled_seen(file: &str, entries: &[LabeledEntry], problems: &mut Problems) -> Seen {
    let mut seen = Seen::new();
    for entry in entries {
        let at = Location::line(file, entry.line);
        match seen.get(&entry.path) {
            Some(&(first, Some(label))) if label != entry.class_id => problems.error(
                &at,
                "conflicting-labels",
                format!(
                    "{} is labeled {} here but {} at {file}:{first}; keep one label",
                    entry.path, entry.class_id, label
                ),
            ),
            Some(&(first, _)) => problems.warning(
                &at,
                "duplicate-line",
                format!(
                    "{} is listed again (first at line {first}); it will be seen twice as often",
                    entry.path
                ),
            ),
            None => {
                seen.insert(entry.path.clone(), (entry.line, Some(entry.class_id)));
            }
        }
    }
    seen
}

fn unlabeled_seen(entries: &[UnlabeledEntry], problems: &mut Problems) -> Seen {
    let mut seen = Seen::new();
    for entry in entries {
        if let Some(&(first, _)) = seen.get(&entry.path) {
            problems.warning(
                &Location::line(lists::UNLABELED_FILE, entry.line),
                "duplicate-line",
                format!("{} is listed again (first at line {first})", entry.path),
            );
        } else {
            seen.insert(entry.path.clone(), (entry.line, None));
        }
    }
    seen
}

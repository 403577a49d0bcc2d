//! Rules that relate the lists to each other: the same image labeled twice,
//! validation images that are also trained on, and so on.

use std::collections::HashMap;

use crate::lists::{self, LabeledEntry, UnlabeledEntry};
use crate::load::ListSet;
use crate::paths::RelPath;
use crate::problem::{Location, Problems, Severity};

/// First place each image appears in one list, with its label if any.
type Seen = HashMap<RelPath, (usize, Option<usize>)>;

/// `(list, other list, severity, why)`: an image of `list` that is also in
/// `other list` is reported at its line in `list`. Training on an image that
/// also validates or tests it makes the accuracy that picks or reports a
/// model meaningless, hence the errors.
const OVERLAP_RULES: [(&str, &str, Severity, &str); 6] = [
    (
        lists::VAL_FILE,
        lists::TRAIN_FILE,
        Severity::Error,
        "an image used for validation must not also be trained on; remove it from one list",
    ),
    (
        lists::TEST_FILE,
        lists::TRAIN_FILE,
        Severity::Error,
        "a test image must not also be trained on; remove it from one list",
    ),
    (
        lists::UNLABELED_FILE,
        lists::TRAIN_FILE,
        Severity::Warning,
        "the image is labeled, so it is used as labeled data; drop it from train_unlabeled.txt",
    ),
    (
        lists::UNLABELED_FILE,
        lists::VAL_FILE,
        Severity::Warning,
        "training on validation images, even unlabeled, makes val accuracy optimistic",
    ),
    (
        lists::UNLABELED_FILE,
        lists::TEST_FILE,
        Severity::Warning,
        "training on test images, even unlabeled, makes test accuracy optimistic",
    ),
    (
        lists::TEST_FILE,
        lists::VAL_FILE,
        Severity::Warning,
        "the same image validates and tests; test accuracy is then not independent",
    ),
];

/// Applies every cross-list rule.
pub fn check_lists(lists: &ListSet, problems: &mut Problems) {
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    let labeled = [
        (lists::TRAIN_FILE, &lists.train),
        (lists::VAL_FILE, &lists.val),
        (lists::TEST_FILE, &lists.test),
    ];
    for (file, entries) in labeled {
        if let Some(entries) = entries {
            seen.insert(file, labeled_seen(file, entries, problems));
        }
    }
    if let Some(entries) = &lists.unlabeled {
        seen.insert(lists::UNLABELED_FILE, unlabeled_seen(entries, problems));
    }
    for (file, other_file, severity, why) in OVERLAP_RULES {
        if let (Some(list), Some(other)) = (seen.get(file), seen.get(other_file)) {
            report_overlap((file, list), (other_file, other), severity, why, problems);
        }
    }
}

/// Reports every image of `list` that also appears in `other`.
fn report_overlap(
    (file, list): (&str, &Seen),
    (other_file, other): (&str, &Seen),
    severity: Severity,
    why: &str,
    problems: &mut Problems,
) {
    let mut hits: Vec<(usize, &RelPath, usize)> = list
        .iter()
        .filter_map(|(path, (line, _))| other.get(path).map(|(o, _)| (*line, path, *o)))
        .collect();
    hits.sort();
    for (line, path, other_line) in hits {
        let at = Location::line(file, line);
        let message = format!("{path} is also in {other_file}:{other_line}: {why}");
        match severity {
            Severity::Error => problems.error(&at, "image-in-two-splits", message),
            Severity::Warning => problems.warning(&at, "image-in-two-splits", message),
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

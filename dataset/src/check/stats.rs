//! Counts per split and class, and the problems that only counts reveal.

use serde::Serialize;

use crate::lists::{self, LabeledEntry, Labels};
use crate::load::ListSet;
use crate::problem::{Location, Problems};

/// Image counts of one labeled split.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SplitCount {
    pub total: usize,
    /// Indexed by class id.
    pub per_class: Vec<usize>,
}

/// Counts of every split.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub train: SplitCount,
    pub val: SplitCount,
    pub unlabeled: usize,
    /// Present when the dataset has a `test.txt`.
    pub test: Option<SplitCount>,
}

/// Settings for the count-based rules.
#[derive(Debug, Clone, Copy)]
pub struct BalanceRules {
    /// Warn when the largest train class has this many times the images of
    /// the smallest.
    pub imbalance_ratio: f64,
}

pub fn count(lists: &ListSet, num_classes: usize) -> Counts {
    let split = |entries: &Option<Vec<LabeledEntry>>| {
        let mut per_class = vec![0; num_classes];
        for e in entries.iter().flatten() {
            if let Some(slot) = per_class.get_mut(e.class_id) {
                *slot += 1;
            }
        }
        SplitCount {
            total: entries.as_ref().map_or(0, Vec::len),
            per_class,
        }
    };
    Counts {
        train: split(&lists.train),
        val: split(&lists.val),
        unlabeled: lists.unlabeled.as_ref().map_or(0, Vec::len),
        test: lists.test.is_some().then(|| split(&lists.test)),
    }
}

/// Empty splits (errors), classes without images, imbalance (warnings).
pub fn check_counts(
    lists: &ListSet,
    counts: &Counts,
    rules: BalanceRules,
    problems: &mut Problems,
) {
    if lists.train.as_ref().is_some_and(Vec::is_empty) {
        problems.error(
            &Location::file(lists::TRAIN_FILE),
            "empty-split",
            "no labeled training images; list at least one 'PATH ID' line",
        );
    }
    if lists.val.as_ref().is_some_and(Vec::is_empty) {
        problems.error(
            &Location::file(lists::VAL_FILE),
            "empty-split",
            "no validation images; checkpoints cannot be chosen without them",
        );
    }
    if lists.unlabeled.as_ref().is_some_and(Vec::is_empty) {
        problems.warning(
            &Location::file(lists::UNLABELED_FILE),
            "empty-split",
            "no unlabeled images: the semi-supervised stages have nothing to learn from",
        );
    }
    let Some(labels) = &lists.labels else { return };
    warn_missing_classes(
        labels,
        &counts.train,
        "train",
        lists.train.is_some(),
        problems,
    );
    warn_missing_classes(labels, &counts.val, "val", lists.val.is_some(), problems);
    warn_imbalance(labels, &counts.train, rules, problems);
}

fn warn_missing_classes(
    labels: &Labels,
    split: &SplitCount,
    name: &str,
    listed: bool,
    problems: &mut Problems,
) {
    if !listed || split.total == 0 {
        return;
    }
    for class in labels.entries() {
        if split.per_class.get(class.id).copied().unwrap_or(0) == 0 {
            problems.warning(
                &Location::line(lists::LABEL_FILE, class.line),
                "class-without-images",
                format!("class {} '{}' has no {name} image", class.id, class.name),
            );
        }
    }
}

fn warn_imbalance(
    labels: &Labels,
    train: &SplitCount,
    rules: BalanceRules,
    problems: &mut Problems,
) {
    let present = train.per_class.iter().enumerate().filter(|(_, n)| **n > 0);
    let (Some(most), Some(least)) = (
        present.clone().max_by_key(|(_, n)| **n),
        present.min_by_key(|(_, n)| **n),
    ) else {
        return;
    };
    let ratio = *most.1 as f64 / *least.1 as f64;
    if ratio >= rules.imbalance_ratio {
        let name = |id: usize| labels.name(id).unwrap_or("?").to_string();
        problems.warning(
            &Location::file(lists::TRAIN_FILE),
            "class-imbalance",
            format!(
                "classes are imbalanced: '{}' has {} images, '{}' only {} ({ratio:.0}x); consider more labels for rare classes or the self-adaptive threshold (algorithm: freematch)",
                name(most.0), most.1, name(least.0), least.1
            ),
        );
    }
}

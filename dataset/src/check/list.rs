//! Checking a custom evaluation list (`semiclass eval --list FILE`) with
//! the rules `semiclass check` applies to `test.txt`: the same line
//! syntax, class ids from the dataset's `label.txt`, no image that is also
//! trained on, every image decoded.

use std::path::Path;

use serde::Serialize;

use super::{CheckError, CheckOptions, CheckProgress, ImageSummary, images, rules};
use crate::lists::{self, LabeledEntry};
use crate::load::ListSet;
use crate::problem::{Location, Problem, Problems};

/// The outcome of checking one list, saved as `check_report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub check_pass: bool,
    pub dataset: std::path::PathBuf,
    /// The list as named in problems (the path as given).
    pub list: String,
    /// From `label.txt`, indexed by class id.
    pub class_names: Vec<String>,
    /// The list's lines that parsed.
    #[serde(skip)]
    pub entries: Vec<LabeledEntry>,
    pub images: ImageSummary,
    pub errors: usize,
    pub warnings: usize,
    /// Sorted by file and line: only `label.txt` and the list itself.
    pub problems: Vec<Problem>,
}

/// Checks the list file `list` (paths relative to the dataset `root`).
/// Problems of the dataset's own lists are left to `semiclass check`, except
/// those of `label.txt`, which gives the class ids.
pub fn check_list(
    root: &Path,
    list: &Path,
    options: &CheckOptions,
    progress: &dyn CheckProgress,
) -> Result<ListReport, CheckError> {
    let root = super::dataset_root(root)?;
    let name = list.display().to_string();
    let mut dataset_problems = Problems::default();
    let mut lists = ListSet::read(&root, &mut dataset_problems);
    let mut problems = Problems::default();
    problems.extend(only_in(
        dataset_problems,
        lists::LABEL_FILE,
        lists::LABEL_FILE,
    ));
    let entries = match std::fs::read(list) {
        Ok(bytes) => lists::parse_labeled(&name, &bytes, lists.labels.as_ref(), &mut problems),
        Err(e) => {
            problems.error(
                &Location::file(&name),
                "unreadable-list-file",
                format!("cannot read: {e}"),
            );
            Vec::new()
        }
    };
    // The list takes test.txt's place, so every rule about test.txt applies.
    lists.test = Some(entries.clone());
    let mut found = Problems::default();
    rules::check_lists(&lists, &mut found);
    let only_list = ListSet {
        test: Some(entries.clone()),
        ..ListSet::default()
    };
    let image_rules = images::ImageRules {
        limits: options.limits,
        min_side: options.min_side,
    };
    let images = images::check_images(&root, &only_list, image_rules, progress, &mut found);
    problems.extend(only_in(found, lists::TEST_FILE, &name));
    Ok(ListReport {
        check_pass: !problems.has_errors(),
        dataset: root,
        list: name,
        class_names: lists.labels.as_ref().map(|l| l.names()).unwrap_or_default(),
        entries,
        images,
        errors: problems.error_count(),
        warnings: problems.warning_count(),
        problems: problems.into_sorted(),
    })
}

/// The problems located in `file`, relocated to `shown_as`.
fn only_in(problems: Problems, file: &str, shown_as: &str) -> Problems {
    let mut kept = Problems::default();
    for p in problems
        .into_sorted()
        .into_iter()
        .filter(|p| p.file == file)
    {
        let at = Location {
            file: shown_as.to_string(),
            line: p.line,
        };
        match p.severity {
            crate::Severity::Error => kept.error(&at, p.code, p.message),
            crate::Severity::Warning => kept.warning(&at, p.code, p.message),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("label.txt", "0 cat\n1 dog\n");
        write("train.txt", "images/a.png 0\n");
        write("train_unlabeled.txt", "");
        write("val.txt", "images/v.png 1\n");
        std::fs::create_dir(dir.path().join("images")).unwrap();
        for (name, shade) in [("a", 10u8), ("b", 90), ("v", 200)] {
            let img = image::RgbImage::from_pixel(20, 20, image::Rgb([shade, 0, 0]));
            img.save(dir.path().join(format!("images/{name}.png")))
                .unwrap();
        }
        dir
    }

    fn shown(report: &ListReport) -> Vec<String> {
        report.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_clean_list_passes_and_keeps_its_entries() {
        let data = dataset();
        let list = data.path().join("mine.txt");
        std::fs::write(&list, "\u{feff}images/b.png 1\r\nimages/v.png 1\n").unwrap();
        let report = check_list(data.path(), &list, &CheckOptions::default(), &()).unwrap();
        assert!(report.check_pass, "{:?}", shown(&report));
        assert_eq!(report.entries.len(), 2);
        assert_eq!(report.images.decoded, 2);
        assert_eq!(report.class_names, ["cat", "dog"]);
        // Sharing images with val.txt is a warning, as for test.txt.
        assert_eq!(report.warnings, 1, "{:?}", shown(&report));
    }

    #[test]
    fn the_list_is_held_to_test_txt_rules_and_problems_name_it() {
        let data = dataset();
        let list = data.path().join("mine.txt");
        std::fs::write(
            &list,
            "images/a.png 0\nimages/b.png 7\nimages/gone.png 1\n../x.png 0\nno-id\n",
        )
        .unwrap();
        // Problems of the dataset's own lists are not the list's business.
        std::fs::write(data.path().join("val.txt"), "images/v.png 9\n").unwrap();
        let report = check_list(data.path(), &list, &CheckOptions::default(), &()).unwrap();
        let lines = shown(&report);
        let name = list.display().to_string();
        assert!(!report.check_pass);
        for expected in [
            format!("{name}:1: error: images/a.png is also in train.txt:1"),
            format!("{name}:2: error: class id 7 is not defined in label.txt"),
            format!("{name}:3: error: image not found: images/gone.png"),
            format!("{name}:4: error:"),
            format!("{name}:5: error: expected 'PATH ID'"),
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(&expected)),
                "{expected}\n{lines:#?}"
            );
        }
        assert!(lines.iter().all(|l| l.starts_with(&name)), "{lines:#?}");
    }

    #[test]
    fn a_missing_list_or_label_file_is_reported_not_fatal() {
        let data = dataset();
        std::fs::remove_file(data.path().join("label.txt")).unwrap();
        let list = data.path().join("absent.txt");
        let report = check_list(data.path(), &list, &CheckOptions::default(), &()).unwrap();
        let lines = shown(&report);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("label.txt: error: missing list file")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("absent.txt: error: cannot read")),
            "{lines:#?}"
        );
    }
}

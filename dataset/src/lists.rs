//! Parsing the four list files (and the optional `test.txt`).
//!
//! Accepted everywhere: UTF-8 with or without BOM, CRLF or LF, leading and
//! trailing white space, blank lines. A labeled line splits its class id off
//! the LAST run of white space, so paths may contain spaces.

use std::collections::HashMap;

use crate::paths::{self, RelPath};
use crate::problem::{Location, Problems};

pub const LABEL_FILE: &str = "label.txt";
pub const TRAIN_FILE: &str = "train.txt";
pub const UNLABELED_FILE: &str = "train_unlabeled.txt";
pub const VAL_FILE: &str = "val.txt";
pub const TEST_FILE: &str = "test.txt";

/// One class from `label.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassEntry {
    pub id: usize,
    pub name: String,
    pub line: usize,
}

/// The classes of a dataset; the class id is the model's output index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels {
    entries: Vec<ClassEntry>,
    by_id: HashMap<usize, usize>,
}

impl Labels {
    pub fn contains(&self, id: usize) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Classes ordered by id.
    pub fn entries(&self) -> &[ClassEntry] {
        &self.entries
    }

    /// Class names indexed by id (ids are checked to be `0..N`).
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|c| c.name.clone()).collect()
    }

    pub fn name(&self, id: usize) -> Option<&str> {
        self.by_id.get(&id).map(|&i| self.entries[i].name.as_str())
    }

    pub fn line_of(&self, id: usize) -> Option<usize> {
        self.by_id.get(&id).map(|&i| self.entries[i].line)
    }
}

/// One line of `train.txt`, `val.txt` or `test.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledEntry {
    pub path: RelPath,
    pub class_id: usize,
    pub line: usize,
}

/// One line of `train_unlabeled.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlabeledEntry {
    pub path: RelPath,
    pub line: usize,
}

/// Splits a file into `(line number, text)`, dropping the BOM, `\r`,
/// surrounding white space and blank lines. A line that is not UTF-8 is
/// reported and skipped.
pub fn content_lines(file: &str, bytes: &[u8], problems: &mut Problems) -> Vec<(usize, String)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        match std::str::from_utf8(raw) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() {
                    lines.push((number, text.to_string()));
                }
            }
            Err(e) => problems.error(
                &Location::line(file, number),
                "not-utf8",
                format!(
                    "not valid UTF-8 (byte {} of the line); save the file as UTF-8",
                    e.valid_up_to() + 1
                ),
            ),
        }
    }
    lines
}

/// Parses `label.txt`: `ID NAME`, the name being the rest of the line.
pub fn parse_labels(bytes: &[u8], problems: &mut Problems) -> Labels {
    let mut labels = Labels::default();
    for (line, text) in content_lines(LABEL_FILE, bytes, problems) {
        let at = Location::line(LABEL_FILE, line);
        let (id_text, name) = match text.split_once(char::is_whitespace) {
            Some((id, name)) => (id, name.trim()),
            None => (text.as_str(), ""),
        };
        let Some(id) = parse_id(id_text, &at, problems) else {
            continue;
        };
        if name.is_empty() {
            problems.error(
                &at,
                "malformed-line",
                format!("expected 'ID NAME', found no class name after id {id}"),
            );
            continue;
        }
        if let Some(first) = labels.line_of(id) {
            problems.error(
                &at,
                "duplicate-class-id",
                format!("class id {id} is already defined at {LABEL_FILE}:{first}"),
            );
            continue;
        }
        if let Some(other) = labels.entries.iter().find(|c| c.name == name) {
            problems.warning(
                &at,
                "duplicate-class-name",
                format!(
                    "class name '{name}' is also used by id {} (line {})",
                    other.id, other.line
                ),
            );
        }
        labels.by_id.insert(id, labels.entries.len());
        labels.entries.push(ClassEntry {
            id,
            name: name.to_string(),
            line,
        });
    }
    finish_labels(labels, problems)
}

/// Sorts classes by id and requires ids `0..N`: the id is the model's output
/// index, so a gap would create a class that can never be trained.
fn finish_labels(mut labels: Labels, problems: &mut Problems) -> Labels {
    labels.entries.sort_by_key(|c| c.id);
    labels.by_id = labels
        .entries
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let gaps: Vec<String> = (0..labels.entries.len())
        .filter(|id| !labels.by_id.contains_key(id))
        .take(10)
        .map(|id| id.to_string())
        .collect();
    if !gaps.is_empty() {
        problems.error(
            &Location::file(LABEL_FILE),
            "class-id-gap",
            format!(
                "class ids must be 0..{} without gaps (the id is the model's output index); missing: {}",
                labels.entries.len() - 1,
                gaps.join(", ")
            ),
        );
    }
    labels
}

/// Parses a `PATH ID` list (`train.txt`, `val.txt`, `test.txt` or a custom
/// evaluation list). Ids are checked against `labels` when it is known.
pub fn parse_labeled(
    file: &str,
    bytes: &[u8],
    labels: Option<&Labels>,
    problems: &mut Problems,
) -> Vec<LabeledEntry> {
    let mut entries = Vec::new();
    for (line, text) in content_lines(file, bytes, problems) {
        let at = Location::line(file, line);
        let Some((path_text, id_text)) = text.rsplit_once(char::is_whitespace) else {
            problems.error(
                &at,
                "malformed-line",
                format!("expected 'PATH ID', found no class id after '{text}'"),
            );
            continue;
        };
        let Some(class_id) = parse_id(id_text, &at, problems) else {
            continue;
        };
        if let Some(labels) = labels
            && !labels.contains(class_id)
        {
            problems.error(
                &at,
                "unknown-class-id",
                format!("class id {class_id} is not defined in {LABEL_FILE}"),
            );
            continue;
        }
        if let Some(path) = parse_path(path_text.trim_end(), &at, problems) {
            entries.push(LabeledEntry {
                path,
                class_id,
                line,
            });
        }
    }
    entries
}

/// Parses `train_unlabeled.txt`: one path per line.
pub fn parse_unlabeled(bytes: &[u8], problems: &mut Problems) -> Vec<UnlabeledEntry> {
    content_lines(UNLABELED_FILE, bytes, problems)
        .into_iter()
        .filter_map(|(line, text)| {
            let at = Location::line(UNLABELED_FILE, line);
            parse_path(&text, &at, problems).map(|path| UnlabeledEntry { path, line })
        })
        .collect()
}

fn parse_id(text: &str, at: &Location, problems: &mut Problems) -> Option<usize> {
    match text.parse::<usize>() {
        Ok(id) => Some(id),
        Err(_) => {
            problems.error(
                at,
                "bad-class-id",
                format!("class id '{text}' is not a non-negative integer"),
            );
            None
        }
    }
}

fn parse_path(text: &str, at: &Location, problems: &mut Problems) -> Option<RelPath> {
    match paths::normalize(text) {
        Ok(path) => Some(path),
        Err(e) => {
            problems.error(at, "path-outside-dataset", e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> (Labels, Problems) {
        let mut problems = Problems::default();
        let labels = parse_labels(text.as_bytes(), &mut problems);
        (labels, problems)
    }

    fn messages(problems: &Problems) -> Vec<String> {
        problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn label_names_are_the_rest_of_the_line_in_any_script() {
        let (labels, problems) =
            labels("\u{feff}0 康乃馨\r\n1 ankle boot  \r\n\r\n2\tT-shirt/top\n");
        assert!(!problems.has_errors(), "{:?}", messages(&problems));
        assert_eq!(labels.names(), ["康乃馨", "ankle boot", "T-shirt/top"]);
    }

    #[test]
    fn label_file_errors_name_the_line() {
        let (_, problems) = labels("0 cat\n0 dog\nx bird\n3\n");
        assert_eq!(
            messages(&problems),
            [
                "label.txt:2: error: class id 0 is already defined at label.txt:1",
                "label.txt:3: error: class id 'x' is not a non-negative integer",
                "label.txt:4: error: expected 'ID NAME', found no class name after id 3",
            ]
        );
    }

    #[test]
    fn class_ids_must_not_have_gaps() {
        let (_, problems) = labels("0 a\n2 b\n");
        let shown = messages(&problems);
        assert_eq!(shown.len(), 1);
        assert!(
            shown[0].starts_with("label.txt: error: class ids must be 0..1"),
            "{shown:?}"
        );
        assert!(shown[0].ends_with("missing: 1"));
    }

    #[test]
    fn duplicate_class_names_are_a_warning() {
        let (_, problems) = labels("0 cat\n1 cat\n");
        assert_eq!(problems.warning_count(), 1);
        assert!(!problems.has_errors());
    }

    #[test]
    fn labeled_lines_split_the_id_off_the_last_white_space() {
        let (labels, _) = labels("0 a\n1 b\n");
        let mut problems = Problems::default();
        let text = "images/my cat 3.jpg 1\r\n  images/b.png\t0  \n\n./images/c.jpg 0";
        let entries = parse_labeled("train.txt", text.as_bytes(), Some(&labels), &mut problems);
        assert!(!problems.has_errors(), "{:?}", messages(&problems));
        let got: Vec<(&str, usize, usize)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.class_id, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("images/my cat 3.jpg", 1, 1),
                ("images/b.png", 0, 2),
                ("images/c.jpg", 0, 4)
            ]
        );
    }

    #[test]
    fn labeled_line_errors_name_file_and_line() {
        let (labels, _) = labels("0 a\n1 b\n");
        let mut problems = Problems::default();
        let text = "images/a.jpg\nimages/b.jpg one\nimages/c.jpg 7\n../d.jpg 0\n/e.jpg 1\n";
        let entries = parse_labeled("val.txt", text.as_bytes(), Some(&labels), &mut problems);
        assert!(entries.is_empty());
        let shown = messages(&problems);
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert!(shown[0].starts_with("val.txt:1: error: expected 'PATH ID'"));
        assert!(shown[1].starts_with("val.txt:2: error: class id 'one'"));
        assert!(shown[2].starts_with("val.txt:3: error: class id 7 is not defined"));
        assert!(shown[3].starts_with("val.txt:4: error: path '../d.jpg' leaves the dataset"));
        assert!(shown[4].starts_with("val.txt:5: error: absolute path"));
    }

    #[test]
    fn ids_are_not_checked_when_label_file_is_unknown() {
        let mut problems = Problems::default();
        let entries = parse_labeled("train.txt", b"a.jpg 42\n", None, &mut problems);
        assert_eq!(entries.len(), 1);
        assert!(!problems.has_errors());
    }

    #[test]
    fn unlabeled_lines_are_whole_paths() {
        let mut problems = Problems::default();
        let entries = parse_unlabeled(b"images/with space.jpg \r\nimages/b.jpg\n", &mut problems);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["images/with space.jpg", "images/b.jpg"]);
    }

    #[test]
    fn invalid_utf8_is_reported_per_line_and_the_rest_is_read() {
        let mut problems = Problems::default();
        let entries = parse_unlabeled(b"ok.jpg\n\xff\xfe.jpg\nfine.jpg\n", &mut problems);
        assert_eq!(entries.len(), 2);
        let shown = messages(&problems);
        assert!(
            shown[0].starts_with("train_unlabeled.txt:2: error: not valid UTF-8"),
            "{shown:?}"
        );
    }
}

//! Problems found in a dataset, printed compiler-style: `FILE:LINE: error: message`.

use std::fmt;

use serde::Serialize;

/// How bad a problem is: errors fail the check, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, attributed to a file relative to the dataset root and, when
/// it concerns one line, to that line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub severity: Severity,
    /// Stable machine-readable kind, e.g. `missing-image`.
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file, line, self.severity, self.message
            ),
            None => write!(f, "{}: {}: {}", self.file, self.severity, self.message),
        }
    }
}

/// Where a problem points: a file and, optionally, a line in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
}

impl Location {
    pub fn line(file: &str, line: usize) -> Self {
        Self {
            file: file.to_string(),
            line: Some(line),
        }
    }

    pub fn file(file: &str) -> Self {
        Self {
            file: file.to_string(),
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => f.write_str(&self.file),
        }
    }
}

/// Collects every problem so that all of them are reported at once.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub fn error(&mut self, at: &Location, code: &'static str, message: impl Into<String>) {
        self.push(at, Severity::Error, code, message.into());
    }

    pub fn warning(&mut self, at: &Location, code: &'static str, message: impl Into<String>) {
        self.push(at, Severity::Warning, code, message.into());
    }

    fn push(&mut self, at: &Location, severity: Severity, code: &'static str, message: String) {
        self.list.push(Problem {
            file: at.file.clone(),
            line: at.line,
            severity,
            code,
            message,
        });
    }

    pub fn extend(&mut self, other: Problems) {
        self.list.extend(other.list);
    }

    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.list.iter().filter(|p| p.severity == severity).count()
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }

    /// Problems sorted by file, then line, errors before warnings on the same line.
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.list
            .sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
        self.list
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_a_compiler() {
        let mut problems = Problems::default();
        problems.error(
            &Location::line("train.txt", 7),
            "missing-image",
            "image not found",
        );
        problems.warning(&Location::file("val.txt"), "empty", "no lines");
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown[0], "train.txt:7: error: image not found");
        assert_eq!(shown[1], "val.txt: warning: no lines");
        assert_eq!(problems.error_count(), 1);
        assert_eq!(problems.warning_count(), 1);
    }

    #[test]
    fn sorts_by_file_then_line() {
        let mut problems = Problems::default();
        problems.warning(&Location::line("val.txt", 2), "a", "x");
        problems.error(&Location::line("train.txt", 9), "b", "x");
        problems.error(&Location::line("train.txt", 3), "c", "x");
        let codes: Vec<&str> = problems.into_sorted().iter().map(|p| p.code).collect();
        assert_eq!(codes, ["c", "b", "a"]);
    }
}

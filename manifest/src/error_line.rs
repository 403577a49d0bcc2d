//! How every semiclass program prints a failure: the error and its causes
//! on one line, outermost first, as anyhow's `{:#}` does, but without a
//! cause whose text its parent's message already holds. The libraries'
//! `"{path}: {source}"` errors show their cause themselves, and would
//! otherwise print it twice.

use std::error::Error;

/// `err` and its `source()` chain, joined by `": "`, repeats left out.
pub fn error_line(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(current) = cause {
        let text = current.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = current.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: not a dataset folder: {source}")]
    struct Shown {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("opening it")]
    struct Outer(#[source] Shown);

    #[test]
    fn each_cause_appears_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Outer(Shown {
            path: "/d".into(),
            source: io,
        });
        assert_eq!(
            error_line(&err),
            "opening it: /d: not a dataset folder: no such file"
        );
    }
}

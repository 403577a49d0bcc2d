//! The evaluation as a table on the terminal.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

use super::{ClassScores, EvalReport};

/// Beyond this many classes only the weakest are listed (all are in the CSV).
const MAX_ROWS: usize = 30;

/// Accuracy, then precision/recall/F1 per class and their averages.
pub fn table(report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} images, top-1 {:.2}%, top-5 {:.2}%, loss {:.4}",
        report.source,
        report.count,
        100.0 * report.top1,
        100.0 * report.top5,
        report.loss
    );
    let rows = shown_rows(&report.classes);
    let width = rows
        .iter()
        .map(|c| c.name.width())
        .chain([12])
        .max()
        .unwrap_or(12)
        .min(40);
    let _ = writeln!(
        out,
        "  {:>4}  {}  {:>9} {:>9} {:>9} {:>8}",
        "id",
        pad("class", width),
        "precision",
        "recall",
        "f1",
        "support"
    );
    for c in &rows {
        let cells = [c.precision, c.recall, c.f1].map(cell);
        let name = pad(&c.name, width);
        let _ = writeln!(
            out,
            "  {:>4}  {name}  {:>9} {:>9} {:>9} {:>8}",
            c.id, cells[0], cells[1], cells[2], c.support
        );
    }
    for (label, a) in [
        ("macro avg", report.macro_avg),
        ("weighted avg", report.weighted_avg),
    ] {
        let cells = [a.precision, a.recall, a.f1].map(|v| cell(Some(v)));
        let _ = writeln!(
            out,
            "  {:>4}  {}  {:>9} {:>9} {:>9} {:>8}",
            "",
            pad(label, width),
            cells[0],
            cells[1],
            cells[2],
            report.count
        );
    }
    if rows.len() < report.classes.len() {
        let _ = writeln!(
            out,
            "  ({} weakest of {} classes by f1; all are in per_class.csv)",
            rows.len(),
            report.classes.len()
        );
    }
    out
}

/// Every class when they are few, else the weakest by F1.
fn shown_rows(classes: &[ClassScores]) -> Vec<ClassScores> {
    let mut rows = classes.to_vec();
    if rows.len() > MAX_ROWS {
        let f1 = |c: &ClassScores| c.f1.unwrap_or(f64::INFINITY);
        rows.sort_by(|a, b| f1(a).total_cmp(&f1(b)).then(a.id.cmp(&b.id)));
        rows.truncate(MAX_ROWS / 2);
        rows.sort_by_key(|c| c.id);
    }
    rows
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

/// `text` padded (or cut) to `width` terminal columns; CJK takes two.
fn pad(text: &str, width: usize) -> String {
    let mut shown = String::new();
    for ch in text.chars() {
        if (shown.clone() + &ch.to_string()).width() > width {
            break;
        }
        shown.push(ch);
    }
    let fill = width - shown.width();
    shown + &" ".repeat(fill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::EvalResult;
    use crate::eval_report::{CheckpointInfo, EvalReport};

    fn report(names: &[&str], confusion: Vec<Vec<u64>>) -> EvalReport {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let count = confusion.iter().flatten().sum::<u64>() as usize;
        let result = EvalResult {
            top1: 0.5,
            top5: 1.0,
            loss: 0.25,
            count,
            confusion,
            mistakes: Vec::new(),
            predictions: Vec::new(),
        };
        let checkpoint = CheckpointInfo {
            path: "/c.safetensors".into(),
            sha256: "00".into(),
            nickname: None,
            model: "resnet18".into(),
            stage: "ssl".into(),
            epoch: 1,
        };
        crate::eval_report::build_report(
            checkpoint,
            ("/d".into(), "test".into()),
            &names,
            &result,
            &[],
        )
    }

    #[test]
    fn columns_line_up_with_chinese_names() {
        let text = table(&report(&["康乃馨", "rose"], vec![vec![1, 1], vec![0, 2]]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "test: 4 images, top-1 50.00%, top-5 100.00%, loss 0.2500"
        );
        let width = |l: &str| l.width();
        assert!(
            lines[1..].iter().all(|l| width(l) == width(lines[1])),
            "{text}"
        );
        assert!(
            lines[2].contains("康乃馨") && lines[2].contains("1.0000"),
            "{text}"
        );
        assert!(lines[4].contains("macro avg"), "{text}");
    }

    #[test]
    fn many_classes_show_the_weakest_and_say_so() {
        let n = 40;
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut confusion = vec![vec![0u64; n]; n];
        for (i, row) in confusion.iter_mut().enumerate() {
            row[i] = 1;
        }
        confusion[7][7] = 0;
        confusion[7][8] = 1;
        let text = table(&report(&refs, confusion));
        assert!(text.contains("(15 weakest of 40 classes by f1"), "{text}");
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("7  c7 ")),
            "{text}"
        );
    }
}

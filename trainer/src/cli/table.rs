//! Plain text tables and value formats shared by the registry commands.

use unicode_width::UnicodeWidthStr;

/// Columns separated by two spaces, each as wide as its widest cell
/// (terminal columns: CJK characters count two).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.width())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// `2026-05-01 12:00:05` (UTC) from Unix seconds.
pub fn time(unix: i64) -> String {
    let text = semiclass_manifest::checkpoint::rfc3339_utc(unix.max(0) as u64);
    text.replace('T', " ").trim_end_matches('Z').to_string()
}

/// A fraction as a percentage, `-` when unknown.
pub fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

/// The first 12 hex digits: enough to tell files apart in a listing.
pub fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_in_terminal_columns() {
        let mut t = Table::new(&["nick", "path"]);
        t.row(vec!["最好".into(), "/a".into()]);
        t.row(vec!["best-long".into(), "/b".into()]);
        assert_eq!(
            t.render(),
            "nick       path\n最好       /a\nbest-long  /b\n"
        );
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(percent(Some(0.5)), "50.00%");
        assert_eq!(percent(None), "-");
        assert_eq!(short_sha("0123456789abcdef"), "0123456789ab");
    }
}

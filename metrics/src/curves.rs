//! `curves.png`: a run's metrics drawn as stacked panels (the `plots`
//! crate draws them), redrawn after each evaluation.

use std::path::{Path, PathBuf};

use semiclass_plots::lines::{Panel, Series, curves};

use crate::{CURVES_FILE_NAME, FILE_NAME, MetricsError, MetricsTable, STEP, read};

/// Draws `run_dir/metrics.csv` as `run_dir/curves.png` and returns the
/// image's path. Meant to be called after each evaluation.
pub fn write_curves(run_dir: &Path) -> Result<PathBuf, MetricsError> {
    let table = read(&run_dir.join(FILE_NAME))?;
    let png = run_dir.join(CURVES_FILE_NAME);
    plot(&table, &png)?;
    Ok(png)
}

/// Draws `table` as stacked panels at `png`: losses together, accuracies
/// together, each other numeric column on its own, over `step` (or
/// `epoch`). A column logged by several stages gets one line per stage.
pub fn plot(table: &MetricsTable, png: &Path) -> Result<(), MetricsError> {
    let x = x_column(&table.header);
    let owned = panels(table, x);
    let panels: Vec<Panel> = owned
        .iter()
        .map(|p| Panel {
            title: &p.title,
            y_label: &p.y_label,
            series: p
                .series
                .iter()
                .map(|(name, points)| Series { name, points })
                .collect(),
        })
        .collect();
    curves(png, x.unwrap_or("row"), &panels)?;
    Ok(())
}

/// A panel that owns its points; [`Panel`] borrows from it.
struct OwnedPanel {
    title: String,
    y_label: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Panels drawn first, in this order.
const PANEL_ORDER: &[&str] = &["loss", "accuracy", "learning rate"];

/// Columns that are coordinates or labels, never curves.
const NOT_CURVES: &[&str] = &["stage", "epoch", STEP, "stage_step", "stage_steps"];

/// `step` when logged, else `epoch`; `None` plots against the row number.
fn x_column(header: &[String]) -> Option<&'static str> {
    [STEP, "epoch"]
        .into_iter()
        .find(|x| header.iter().any(|c| c == x))
}

fn panels(table: &MetricsTable, x: Option<&str>) -> Vec<OwnedPanel> {
    let mut panels: Vec<OwnedPanel> = Vec::new();
    let columns = table
        .header
        .iter()
        .filter(|c| !NOT_CURVES.contains(&c.as_str()));
    for column in columns {
        let series = column_series(table, x, column);
        if series.is_empty() {
            continue;
        }
        let (title, y_label) = panel_names(column);
        match panels.iter_mut().find(|p| p.title == title) {
            Some(panel) => panel.series.extend(series),
            None => panels.push(OwnedPanel {
                title,
                y_label,
                series,
            }),
        }
    }
    // What a reader checks first goes on top; the rest keep header order.
    panels.sort_by_key(|p| {
        PANEL_ORDER
            .iter()
            .position(|t| *t == p.title)
            .unwrap_or(PANEL_ORDER.len())
    });
    panels
}

/// The numeric points of `column`, one series per stage when several
/// stages logged it (e.g. a teacher's and a student's loss).
fn column_series(
    table: &MetricsTable,
    x: Option<&str>,
    column: &str,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut by_stage: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        let Some(y) = row.number(column) else {
            continue;
        };
        let Some(x) = x.map_or(Some(i as f64), |x| row.number(x)) else {
            continue;
        };
        let stage = row.get("stage").unwrap_or("");
        match by_stage.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, points)) => points.push((x, y)),
            None => by_stage.push((stage, vec![(x, y)])),
        }
    }
    let several = by_stage.len() > 1;
    by_stage
        .into_iter()
        .map(|(stage, points)| match several && !stage.is_empty() {
            true => (format!("{column} ({stage})"), points),
            false => (column.to_string(), points),
        })
        .collect()
}

/// Panel title and y label for a column: related columns share a panel.
fn panel_names(column: &str) -> (String, String) {
    let (title, y) = if column.contains("loss") {
        ("loss", "loss")
    } else if column.contains("top") || column.contains("acc") {
        ("accuracy", "accuracy")
    } else {
        match column {
            "lr" => ("learning rate", "lr"),
            "mask_ratio" => (
                "mask ratio (unlabeled samples above the threshold)",
                "ratio",
            ),
            "images_per_s" => ("throughput", "images/s"),
            "data_wait" => ("data wait", column),
            _ => (column, column),
        }
    };
    (title.to_string(), y.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Row, TRAIN_COLUMNS};

    #[test]
    fn related_columns_share_a_panel_and_stages_split_series() {
        let header: Vec<String> = TRAIN_COLUMNS.iter().map(|c| c.to_string()).collect();
        let rows = vec![
            Row::new()
                .with("stage", "teacher")
                .with("step", 1u64)
                .with("sup_loss", 1.0),
            Row::new()
                .with("stage", "student")
                .with("step", 1u64)
                .with("sup_loss", 2.0)
                .with("unsup_loss", 0.5),
        ];
        let panels = panels(&MetricsTable { header, rows }, Some("step"));
        assert_eq!(panels.len(), 1);
        let names: Vec<&str> = panels[0].series.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["sup_loss (teacher)", "sup_loss (student)", "unsup_loss"]
        );
    }
}

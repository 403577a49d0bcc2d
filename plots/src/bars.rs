//! Horizontal grouped bar charts: one row per category, one bar per series.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{PlotError, SERIES_COLORS, font, save_rgb};

/// Categories (e.g. class names) with one count per series (e.g. train, val).
pub struct GroupedBars<'a> {
    pub title: &'a str,
    pub categories: &'a [String],
    /// `(series name, one value per category)`.
    pub series: &'a [(&'a str, &'a [usize])],
}

const ROW_PX: u32 = 22;
const WIDTH: u32 = 1100;
/// Beyond this many categories the chart stops growing and labels thin out.
const MAX_LABELED_ROWS: usize = 300;

/// Draws `chart` as a PNG at `path`. Category names are drawn as given
/// (Chinese included), one row each.
pub fn horizontal_bars(path: &Path, chart: &GroupedBars) -> Result<(), PlotError> {
    font::ensure_registered()?;
    let rows = chart.categories.len().max(1);
    let height = 120 + ROW_PX * rows.min(MAX_LABELED_ROWS) as u32;
    let mut buffer = vec![255u8; (WIDTH * height * 3) as usize];
    draw(&mut buffer, (WIDTH, height), chart).map_err(|e| PlotError::Draw(e.to_string()))?;
    save_rgb(path, buffer, (WIDTH, height))
}

fn draw(
    buffer: &mut [u8],
    size: (u32, u32),
    chart: &GroupedBars,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buffer, size).into_drawing_area();
    root.fill(&WHITE)?;
    let rows = chart.categories.len().max(1);
    let max = chart
        .series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, (font::FAMILY, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(label_area_px(chart.categories))
        // Rows run top to bottom, as a reader scans a list of classes;
        // headroom on the right keeps the legend clear of the longest bar.
        .build_cartesian_2d(0f64..(max.max(1) as f64 * 1.3), (rows as f64)..0f64)?;
    ctx.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("images")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((font::FAMILY, 14))
        .draw()?;
    let bar = 0.8 / chart.series.len().max(1) as f64;
    for (s, (name, values)) in chart.series.iter().enumerate() {
        let color = SERIES_COLORS[s % SERIES_COLORS.len()];
        let top = move |row: usize| row as f64 + 0.1 + bar * s as f64;
        ctx.draw_series(values.iter().enumerate().map(|(row, &v)| {
            Rectangle::new(
                [(0.0, top(row)), (v as f64, top(row) + bar)],
                color.filled(),
            )
        }))?
        .label(*name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    draw_row_labels(&root, &ctx, chart.categories)?;
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((font::FAMILY, 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Class names right-aligned left of their rows; with more rows than fit,
/// every k-th name is drawn.
fn draw_row_labels(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ctx: &Chart,
    names: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let step = names.len().div_ceil(MAX_LABELED_ROWS).max(1);
    let style =
        TextStyle::from((font::FAMILY, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (row, name) in names.iter().enumerate().step_by(step) {
        let (x, y) = ctx.backend_coord(&(0.0, row as f64 + 0.5));
        root.draw(&Text::new(
            format!("{row}: {name}"),
            (x - 6, y),
            style.clone(),
        ))?;
    }
    Ok(())
}

/// Wide enough for the longest "id: name" label, within reason.
fn label_area_px(names: &[String]) -> u32 {
    let widest = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let digits = i.to_string().len() + 2;
            // CJK glyphs are about twice as wide as Latin ones at 14 px.
            digits * 8
                + n.chars()
                    .map(|c| if c.is_ascii() { 8 } else { 15 })
                    .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    (widest as u32 + 16).clamp(60, 420)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_latin_and_chinese_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        let names = vec!["康乃馨".to_string(), "ankle boot".to_string()];
        let chart = GroupedBars {
            title: "images per class",
            categories: &names,
            series: &[("train", &[5, 1]), ("val", &[2, 0])],
        };
        horizontal_bars(&path, &chart).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.width(), WIDTH);
        let non_white = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(
            non_white > 1000,
            "chart looks empty: {non_white} drawn pixels"
        );
    }
}

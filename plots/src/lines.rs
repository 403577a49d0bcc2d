//! Training curves: panels stacked top to bottom over one shared x axis
//! (step or epoch), each with its own y axis and named line series.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{PlotError, SERIES_COLORS, font, save_rgb};

/// One named line, e.g. `sup_loss` over steps.
pub struct Series<'a> {
    pub name: &'a str,
    /// `(x, y)` in any order of x; non-finite points are skipped.
    pub points: &'a [(f64, f64)],
}

/// One chart in the stack, e.g. "loss" with `sup_loss` and `unsup_loss`.
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
}

const WIDTH: u32 = 1100;
const PANEL_PX: u32 = 250;
/// Room right of each panel for its legend, so it never hides a curve.
const LEGEND_PX: u32 = 210;
/// Up to this many points a series also gets a dot per point: sparse
/// series (validation once per epoch) read better with their samples shown.
const MAX_MARKED_POINTS: usize = 40;

/// Values beyond this are skipped like infinities: plotters' axis and
/// pixel arithmetic overflows on spans near `f64::MAX`.
const AXIS_LIMIT: f64 = 1e300;

/// A panel reduced to its finite points, with its y range.
struct Prepared<'a> {
    title: &'a str,
    y_label: &'a str,
    /// `(name, finite points sorted by x)`; series with no finite point dropped.
    series: Vec<(&'a str, Vec<(f64, f64)>)>,
    y: Range<f64>,
}

/// Draws `panels` as one PNG at `path`, stacked top to bottom over a shared
/// x axis named `x_label`. Panels without a finite point are left out; when
/// none is left the image says so rather than failing, so a run can draw
/// its curves before the first value is logged.
pub fn curves(path: &Path, x_label: &str, panels: &[Panel]) -> Result<(), PlotError> {
    font::ensure_registered()?;
    let prepared: Vec<Prepared> = panels.iter().filter_map(prepare).collect();
    let height = PANEL_PX * prepared.len().max(1) as u32;
    let mut buffer = vec![255u8; (WIDTH * height * 3) as usize];
    draw(&mut buffer, (WIDTH, height), x_label, &prepared)
        .map_err(|e| PlotError::Draw(e.to_string()))?;
    save_rgb(path, buffer, (WIDTH, height))
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(buffer: &mut [u8], size: (u32, u32), x_label: &str, panels: &[Prepared]) -> DrawResult {
    let root = BitMapBackend::with_buffer(buffer, size).into_drawing_area();
    root.fill(&WHITE)?;
    let Some(x) = padded(
        panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|(_, s)| s)
            .map(|p| p.0),
    ) else {
        let style = TextStyle::from((font::FAMILY, 20).into_font())
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(
            "no data to plot yet",
            (WIDTH as i32 / 2, PANEL_PX as i32 / 2),
            style,
        ))?;
        return Ok(root.present()?);
    };
    let areas = root.split_evenly((panels.len(), 1));
    for (i, (panel, area)) in panels.iter().zip(&areas).enumerate() {
        // Only the bottom panel names the x axis: it is the same for all.
        let x_desc = if i + 1 == panels.len() { x_label } else { "" };
        draw_panel(area, panel, x.clone(), x_desc)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(area: &Area, panel: &Prepared, x: Range<f64>, x_desc: &str) -> DrawResult {
    let (plot_area, legend_area) = area.split_horizontally(WIDTH - LEGEND_PX);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(panel.title, (font::FAMILY, 18))
        .margin(8)
        .margin_left(12)
        .x_label_area_size(if x_desc.is_empty() { 24 } else { 44 })
        .y_label_area_size(72)
        .build_cartesian_2d(x.clone(), panel.y.clone())?;
    let (x_span, y_span) = (x.end - x.start, panel.y.end - panel.y.start);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(panel.y_label)
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v, x_span))
        .y_label_formatter(&|v| tick_label(*v, y_span))
        .label_style((font::FAMILY, 13))
        .axis_desc_style((font::FAMILY, 14))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    for (s, (_, points)) in panel.series.iter().enumerate() {
        let color = SERIES_COLORS[s % SERIES_COLORS.len()];
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?;
        if points.len() <= MAX_MARKED_POINTS {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    draw_legend(&legend_area, &panel.series)
}

/// Legend beside the panel: a colour swatch, the series name and its last
/// value, which is usually what a reader of a running job wants to know.
fn draw_legend(area: &Area, series: &[(&str, Vec<(f64, f64)>)]) -> DrawResult {
    let style =
        TextStyle::from((font::FAMILY, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (s, (name, points)) in series.iter().enumerate() {
        let color = SERIES_COLORS[s % SERIES_COLORS.len()];
        let y = 44 + 24 * s as i32;
        area.draw(&PathElement::new([(6, y), (30, y)], color.stroke_width(3)))?;
        let last = points.last().map_or(String::new(), |p| format_value(p.1));
        area.draw(&Text::new(
            format!("{name}  {last}"),
            (38, y),
            style.clone(),
        ))?;
    }
    Ok(())
}

/// Keeps drawable points sorted by x (a line drawn in file order would zigzag
/// after a resume re-logs a step); `None` when nothing finite is left.
fn prepare<'a>(panel: &Panel<'a>) -> Option<Prepared<'a>> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = panel
        .series
        .iter()
        .map(|s| {
            let mut points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| drawable(x) && drawable(y))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (s.name, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let y = padded(series.iter().flat_map(|(_, s)| s).map(|p| p.1))?;
    Some(Prepared {
        title: panel.title,
        y_label: panel.y_label,
        series,
        y,
    })
}

/// The range of `values` with 5% headroom each side; a single value gets a
/// range around it so it is drawn mid-panel instead of on an edge.
fn padded(values: impl Iterator<Item = f64>) -> Option<Range<f64>> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    Some((lo - pad)..(hi + pad))
}

fn drawable(v: f64) -> bool {
    v.abs() <= AXIS_LIMIT
}

/// Tick text with as many decimals as the axis span needs; tiny values
/// (learning rates) and huge ones (steps) in short forms.
fn tick_label(v: f64, span: f64) -> String {
    // A tick computed as 1e-17 instead of 0 would otherwise print as such.
    let v = if v.abs() < span.abs() * 1e-9 { 0.0 } else { v };
    if needs_exponent(v) {
        return format!("{v:.1e}");
    }
    if v.abs() >= 1e4 && span >= 1e3 {
        return format!("{}k", trim_zeros(format!("{:.1}", v / 1e3)));
    }
    let decimals = if span > 0.0 && span.is_finite() {
        (2.0 - span.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    trim_zeros(format!("{v:.decimals$}"))
}

/// A legend value: four significant digits, exponent form when tiny.
fn format_value(v: f64) -> String {
    if needs_exponent(v) {
        format!("{v:.3e}")
    } else {
        let decimals = (3.0 - v.abs().max(1e-3).log10().floor()).clamp(0.0, 6.0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    }
}

/// Values too small or too large for plain decimals to stay short.
fn needs_exponent(v: f64) -> bool {
    v != 0.0 && !(1e-3..1e6).contains(&v.abs())
}

fn trim_zeros(text: String) -> String {
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn_pixels(path: &Path) -> (u32, usize) {
        let image = image::open(path).unwrap().to_rgb8();
        let count = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        (image.height(), count)
    }

    #[test]
    fn stacks_non_empty_panels_and_skips_bad_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let loss: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 2.0 / (1.0 + i as f64 * 0.05)))
            .collect();
        let bad = [
            (0.0, f64::NAN),
            (1.0, f64::INFINITY),
            (f64::NAN, 1.0),
            (2.0, 0.5),
        ];
        let single = [(100.0, 0.42)];
        let panels = [
            Panel {
                title: "loss",
                y_label: "loss",
                series: vec![
                    Series {
                        name: "sup_loss",
                        points: &loss,
                    },
                    Series {
                        name: "unsup_loss",
                        points: &bad,
                    },
                ],
            },
            Panel {
                title: "empty",
                y_label: "x",
                series: vec![Series {
                    name: "none",
                    points: &[],
                }],
            },
            Panel {
                title: "val accuracy",
                y_label: "top1",
                series: vec![Series {
                    name: "top1",
                    points: &single,
                }],
            },
        ];
        curves(&path, "step", &panels).unwrap();
        let (height, drawn) = drawn_pixels(&path);
        assert_eq!(height, 2 * PANEL_PX, "the empty panel is skipped");
        assert!(drawn > 5000, "chart looks empty: {drawn} drawn pixels");
    }

    #[test]
    fn nothing_to_plot_still_writes_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let nan = [(f64::NAN, f64::NAN)];
        let panels = [Panel {
            title: "loss",
            y_label: "loss",
            series: vec![Series {
                name: "a",
                points: &nan,
            }],
        }];
        curves(&path, "step", &panels).unwrap();
        curves(&path, "step", &[]).unwrap();
        assert_eq!(drawn_pixels(&path).0, PANEL_PX);
    }

    fn one_series<'a>(title: &'a str, points: &'a [(f64, f64)]) -> Panel<'a> {
        Panel {
            title,
            y_label: title,
            series: vec![Series {
                name: title,
                points,
            }],
        }
    }

    #[test]
    fn extreme_values_do_not_hang_or_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let wide = [
            (0.0, -f64::MAX),
            (1.0, f64::MAX),
            (2.0, -1e300),
            (3.0, 1e300),
        ];
        let huge = [(0.0, f64::MAX), (1.0, f64::MAX)];
        let flat = [(5.0, 1e-7), (6.0, 1e-7)];
        let far_x = [(-f64::MAX, 1.0), (f64::MAX, 2.0)];
        let panels = [
            one_series("wide", &wide),
            one_series("huge", &huge),
            one_series("flat", &flat),
            one_series("far x", &far_x),
        ];
        curves(&path, "step", &panels).unwrap();
    }

    #[test]
    fn tick_labels_fit_their_scale() {
        assert_eq!(tick_label(0.25, 1.0), "0.25");
        assert_eq!(tick_label(1500.0, 2000.0), "1500");
        assert_eq!(tick_label(25000.0, 50000.0), "25k");
        assert_eq!(tick_label(0.0001, 0.001), "1.0e-4");
        assert_eq!(tick_label(1e-19, 0.001), "0");
        assert_eq!(format_value(0.734512), "0.7345");
        assert_eq!(format_value(1234.5678), "1235");
    }
}

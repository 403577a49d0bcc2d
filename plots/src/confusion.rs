//! Confusion matrix heat maps: true class down, predicted class across.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{PlotError, font, save_rgb};

/// Up to this many classes every cell shows its value; beyond, cells are
/// too small for legible text and the colour alone tells the story.
const MAX_TEXT_CLASSES: usize = 50;
/// The matrix side aims at this many pixels.
const MATRIX_PX: u32 = 1000;
const MARGIN: i32 = 20;
const TITLE_PX: i32 = 44;
/// Room for the rotated "true" / the "predicted" axis titles.
const AXIS_TITLE_PX: i32 = 28;
const COLORBAR_PX: i32 = 90;
/// Longer class names are cut with an ellipsis, so that one long name
/// does not push the matrix off to the side.
const MAX_LABEL_PX: u32 = 200;
/// Below this spacing labels would overlap; only every k-th is drawn.
const MIN_LABEL_SPACING: u32 = 13;
/// matplotlib's "Blues" stops: light for empty cells, dark for the diagonal.
const BLUES: [(f64, (u8, u8, u8)); 5] = [
    (0.0, (247, 251, 255)),
    (0.25, (198, 219, 239)),
    (0.5, (107, 174, 214)),
    (0.75, (33, 113, 181)),
    (1.0, (8, 48, 107)),
];

/// Everything about the picture that follows from the input alone.
struct Layout {
    n: usize,
    cell: i32,
    /// Top-left corner of the matrix.
    origin: (i32, i32),
    size: (u32, u32),
    /// Font size of class names, and whether column names stand upright.
    label_px: u32,
    rotate_columns: bool,
    /// Draw every `label_step`-th class name.
    label_step: usize,
    labels: Vec<String>,
}

/// The values as drawn: fractions of each true class when normalized.
struct Cells<'a> {
    values: Vec<Vec<f64>>,
    counts: &'a [Vec<u64>],
    normalized: bool,
    max: f64,
}

/// Draws `counts[true][pred]` as a heat map PNG at `path`, each cell with
/// its count (or, `normalized`, its fraction of the true class with two
/// decimals). Class names label both axes, Chinese included.
pub fn confusion_matrix(
    path: &Path,
    class_names: &[String],
    counts: &[Vec<u64>],
    normalized: bool,
) -> Result<(), PlotError> {
    check_shape(path, class_names, counts)?;
    font::ensure_registered()?;
    let cells = Cells::new(counts, normalized);
    let layout = Layout::new(class_names).map_err(|e| PlotError::Draw(e.to_string()))?;
    let (width, height) = layout.size;
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    draw(&mut buffer, &layout, &cells).map_err(|e| PlotError::Draw(e.to_string()))?;
    save_rgb(path, buffer, (width, height))
}

fn check_shape(path: &Path, names: &[String], counts: &[Vec<u64>]) -> Result<(), PlotError> {
    let n = names.len();
    let problem = if n == 0 {
        Some("no classes".to_string())
    } else if counts.len() != n {
        Some(format!(
            "{n} class names but {} rows of counts",
            counts.len()
        ))
    } else {
        counts
            .iter()
            .position(|row| row.len() != n)
            .map(|r| format!("row {r} has {} counts, expected {n}", counts[r].len()))
    };
    match problem {
        Some(problem) => Err(PlotError::Draw(format!(
            "{}: confusion matrix: {problem}",
            path.display()
        ))),
        None => Ok(()),
    }
}

impl<'a> Cells<'a> {
    fn new(counts: &'a [Vec<u64>], normalized: bool) -> Self {
        let values: Vec<Vec<f64>> = counts
            .iter()
            .map(|row| {
                let total: u64 = row.iter().sum();
                // A class with no samples stays at zero rather than NaN.
                let scale = if normalized && total > 0 {
                    total as f64
                } else {
                    1.0
                };
                row.iter().map(|&c| c as f64 / scale).collect()
            })
            .collect();
        // Fractions keep a fixed 0..1 scale so two runs compare by colour.
        let max = if normalized {
            1.0
        } else {
            values.iter().flatten().copied().fold(1.0, f64::max)
        };
        Cells {
            values,
            counts,
            normalized,
            max,
        }
    }

    /// Cell text; empty for zero so that the few errors stand out.
    fn text(&self, row: usize, col: usize) -> String {
        match (self.counts[row][col], self.normalized) {
            (0, _) => String::new(),
            (_, true) => format!("{:.2}", self.values[row][col]),
            (count, false) => count.to_string(),
        }
    }

    /// Widest cell text, to size the cell font.
    fn widest_text(&self) -> String {
        let n = self.counts.len();
        (0..n)
            .flat_map(|r| (0..n).map(move |c| (r, c)))
            .map(|(r, c)| self.text(r, c))
            .max_by_key(String::len)
            .unwrap_or_default()
    }

    fn title(&self) -> String {
        let total: u64 = self.counts.iter().flatten().sum();
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        let kind = if self.normalized {
            "normalized by true class"
        } else {
            "counts"
        };
        if total == 0 {
            return format!("confusion matrix ({kind})");
        }
        let accuracy = 100.0 * correct as f64 / total as f64;
        format!("confusion matrix ({kind}): {total} images, accuracy {accuracy:.1}%")
    }
}

impl Layout {
    fn new(names: &[String]) -> Result<Self, FontError> {
        let n = names.len();
        let cell = if n <= MAX_TEXT_CLASSES {
            (MATRIX_PX / n as u32).clamp(28, 80)
        } else {
            (MATRIX_PX * 3 / 2 / n as u32).max(1)
        };
        let label_px = (cell * 3 / 5).clamp(11, 14);
        let label_step = MIN_LABEL_SPACING.div_ceil(cell) as usize;
        let labels = names
            .iter()
            .map(|name| font::shorten(name, label_px, MAX_LABEL_PX))
            .collect::<Result<Vec<_>, _>>()?;
        let widest = labels
            .iter()
            .map(|l| font::text_width(l, label_px))
            .max()
            .unwrap_or(0);
        // Upright column names only when every one fits in its cell.
        let rotate_columns = widest + 4 > cell * label_step as u32;
        let column_px = if rotate_columns { widest } else { label_px + 4 };
        let side = cell as i32 * n as i32;
        let origin = (
            MARGIN + AXIS_TITLE_PX + widest as i32 + 8,
            MARGIN + TITLE_PX,
        );
        let width = origin.0 + side + COLORBAR_PX + MARGIN;
        let height = origin.1 + side + 8 + column_px as i32 + AXIS_TITLE_PX + MARGIN;
        Ok(Layout {
            n,
            cell: cell as i32,
            origin,
            // Wide enough for the title even with two classes.
            size: (width.max(760) as u32, height as u32),
            label_px,
            rotate_columns,
            label_step,
            labels,
        })
    }

    fn side(&self) -> i32 {
        self.cell * self.n as i32
    }

    fn cell_center(&self, row: usize, col: usize) -> (i32, i32) {
        let half = self.cell / 2;
        let (x, y) = self.origin;
        (
            x + col as i32 * self.cell + half,
            y + row as i32 * self.cell + half,
        )
    }
}

use plotters::style::FontError;

type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(buffer: &mut [u8], layout: &Layout, cells: &Cells) -> DrawResult {
    let root = BitMapBackend::with_buffer(buffer, layout.size).into_drawing_area();
    root.fill(&WHITE)?;
    let center = Pos::new(HPos::Center, VPos::Center);
    let title = TextStyle::from((font::FAMILY, 20).into_font()).pos(center);
    root.draw(&Text::new(
        cells.title(),
        (layout.size.0 as i32 / 2, MARGIN + 12),
        title,
    ))?;
    draw_cells(&root, layout, cells)?;
    draw_class_labels(&root, layout)?;
    draw_axis_titles(&root, layout)?;
    draw_colorbar(&root, layout, cells)?;
    root.present()?;
    Ok(())
}

fn draw_cells(root: &Area, layout: &Layout, cells: &Cells) -> DrawResult {
    let half = layout.cell / 2;
    for (r, row) in cells.values.iter().enumerate() {
        for (c, &value) in row.iter().enumerate() {
            let (x, y) = layout.cell_center(r, c);
            let corners = [
                (x - half, y - half),
                (x - half + layout.cell, y - half + layout.cell),
            ];
            root.draw(&Rectangle::new(corners, blues(value / cells.max).filled()))?;
        }
    }
    let (x0, y0) = layout.origin;
    let side = layout.side();
    root.draw(&Rectangle::new(
        [(x0, y0), (x0 + side, y0 + side)],
        BLACK.mix(0.5),
    ))?;
    if layout.n <= MAX_TEXT_CLASSES {
        draw_cell_text(root, layout, cells)?;
    }
    Ok(())
}

fn draw_cell_text(root: &Area, layout: &Layout, cells: &Cells) -> DrawResult {
    let widest = cells.widest_text();
    let mut size = (layout.cell as u32 * 2 / 5).clamp(8, 16);
    // Shrink until the widest value fits its cell with a little air.
    while size > 8 && font::text_width(&widest, size) as i32 + 4 > layout.cell {
        size -= 1;
    }
    let font = (font::FAMILY, size as f64).into_font();
    for (r, row) in cells.values.iter().enumerate() {
        for (c, &value) in row.iter().enumerate() {
            // White on the dark end of the scale, black on the light end.
            let color = if value / cells.max > 0.55 {
                WHITE
            } else {
                BLACK
            };
            let style = font.color(&color).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(
                cells.text(r, c),
                layout.cell_center(r, c),
                style,
            ))?;
        }
    }
    Ok(())
}

/// Row names right-aligned left of the matrix; column names under it,
/// upright when they fit and otherwise reading upwards.
fn draw_class_labels(root: &Area, layout: &Layout) -> DrawResult {
    let font = (font::FAMILY, layout.label_px as f64).into_font();
    let rows = TextStyle::from(font.clone()).pos(Pos::new(HPos::Right, VPos::Center));
    let columns = if layout.rotate_columns {
        TextStyle::from(font.transform(FontTransform::Rotate270))
            .pos(Pos::new(HPos::Right, VPos::Center))
    } else {
        TextStyle::from(font).pos(Pos::new(HPos::Center, VPos::Top))
    };
    let (x0, y0) = layout.origin;
    let bottom = y0 + layout.side() + 6;
    for (i, label) in layout.labels.iter().enumerate().step_by(layout.label_step) {
        let (x, y) = layout.cell_center(i, i);
        root.draw(&Text::new(label.as_str(), (x0 - 6, y), rows.clone()))?;
        root.draw(&Text::new(label.as_str(), (x, bottom), columns.clone()))?;
    }
    Ok(())
}

fn draw_axis_titles(root: &Area, layout: &Layout) -> DrawResult {
    let font = (font::FAMILY, 16).into_font();
    let center = Pos::new(HPos::Center, VPos::Center);
    let (x0, y0) = layout.origin;
    let middle = layout.side() / 2;
    let upward = TextStyle::from(font.transform(FontTransform::Rotate270)).pos(center);
    root.draw(&Text::new("true", (MARGIN + 8, y0 + middle), upward))?;
    let across = TextStyle::from(font).pos(center);
    let y = layout.size.1 as i32 - MARGIN - AXIS_TITLE_PX / 2;
    root.draw(&Text::new("predicted", (x0 + middle, y), across))?;
    Ok(())
}

/// The colour scale right of the matrix, with its ends and middle marked.
fn draw_colorbar(root: &Area, layout: &Layout, cells: &Cells) -> DrawResult {
    let (x0, y0) = layout.origin;
    let side = layout.side().max(1);
    let left = x0 + side + 16;
    for dy in 0..side {
        let fraction = 1.0 - dy as f64 / side as f64;
        let y = y0 + dy;
        root.draw(&Rectangle::new(
            [(left, y), (left + 16, y + 1)],
            blues(fraction).filled(),
        ))?;
    }
    root.draw(&Rectangle::new(
        [(left, y0), (left + 16, y0 + side)],
        BLACK.mix(0.5),
    ))?;
    let style =
        TextStyle::from((font::FAMILY, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for fraction in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let value = fraction * cells.max;
        let text = if cells.normalized {
            format!("{value:.2}")
        } else {
            format!("{value:.0}")
        };
        let y = y0 + ((1.0 - fraction) * side as f64) as i32;
        root.draw(&PathElement::new([(left + 16, y), (left + 20, y)], BLACK))?;
        root.draw(&Text::new(text, (left + 23, y), style.clone()))?;
    }
    Ok(())
}

/// Colour for `t` in 0..=1 on the "Blues" scale.
fn blues(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let upper = BLUES
        .iter()
        .position(|&(at, _)| at >= t)
        .unwrap_or(BLUES.len() - 1)
        .max(1);
    let ((a, ca), (b, cb)) = (BLUES[upper - 1], BLUES[upper]);
    let w = (t - a) / (b - a);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * w).round() as u8;
    RGBColor(mix(ca.0, cb.0), mix(ca.1, cb.1), mix(ca.2, cb.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("class {i}")).collect()
    }

    fn diagonal(n: usize) -> Vec<Vec<u64>> {
        (0..n)
            .map(|r| {
                (0..n)
                    .map(|c| {
                        if r == c {
                            40 + r as u64
                        } else {
                            ((r * 7 + c) % 5) as u64
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn draws_counts_and_fractions_with_chinese_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec![
            "康乃馨".to_string(),
            "ankle boot".to_string(),
            "a very long class name indeed, far too long".to_string(),
        ];
        let counts = vec![vec![50, 2, 0], vec![3, 40, 7], vec![0, 0, 0]];
        for normalized in [false, true] {
            let path = dir.path().join(format!("cm-{normalized}.png"));
            confusion_matrix(&path, &names, &counts, normalized).unwrap();
            let image = image::open(&path).unwrap().to_rgb8();
            let drawn = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
            assert!(drawn > 10_000, "matrix looks empty: {drawn} drawn pixels");
        }
    }

    #[test]
    fn scales_to_many_classes() {
        let dir = tempfile::tempdir().unwrap();
        for n in [1, 50, 300] {
            let path = dir.path().join(format!("cm{n}.png"));
            confusion_matrix(&path, &names(n), &diagonal(n), n == 50).unwrap();
            let (width, height) = image::image_dimensions(&path).unwrap();
            assert!(
                width <= 2400 && height <= 2400,
                "{n} classes: {width}x{height}"
            );
        }
    }

    #[test]
    fn a_wrong_shape_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.png");
        let err = confusion_matrix(&path, &names(3), &diagonal(2), false).unwrap_err();
        assert!(err.to_string().contains("cm.png"), "{err}");
        let ragged = vec![vec![1, 2], vec![3]];
        assert!(confusion_matrix(&path, &names(2), &ragged, false).is_err());
        assert!(confusion_matrix(&path, &[], &[], false).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn blues_runs_light_to_dark() {
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(blues(f64::NAN), blues(0.0));
    }
}

//! PNG charts for the reports a run directory holds.
//!
//! Drawn with plotters into a memory buffer and encoded with `image`, so no
//! system graphics library is needed. Labels need a font with CJK glyphs
//! (class names are often Chinese): see [`font`].

pub mod bars;
pub mod confusion;
pub mod font;
pub mod gallery;
pub mod lines;

pub use bars::{GroupedBars, horizontal_bars};
pub use confusion::confusion_matrix;
pub use gallery::{Tile, gallery};
pub use lines::{Panel, Series, curves};

/// matplotlib's tab10: distinct, and familiar to readers of PyTorch runs.
pub(crate) const SERIES_COLORS: [plotters::style::RGBColor; 10] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(140, 86, 75),
    plotters::style::RGBColor(227, 119, 194),
    plotters::style::RGBColor(127, 127, 127),
    plotters::style::RGBColor(188, 189, 34),
    plotters::style::RGBColor(23, 190, 207),
];

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No usable font (the message says which file and what to install).
    #[error("{0}")]
    Font(String),
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("{path}: cannot write PNG: {source}")]
    Write {
        path: String,
        source: image::ImageError,
    },
}

/// Encodes an RGB buffer drawn by plotters as a PNG file.
pub(crate) fn save_rgb(
    path: &std::path::Path,
    buffer: Vec<u8>,
    (width, height): (u32, u32),
) -> Result<(), PlotError> {
    let image = image::RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| PlotError::Draw("buffer size does not match the chart size".into()))?;
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| PlotError::Write {
            path: path.display().to_string(),
            source,
        })
}

//! Finding a font that can draw class names in any script.

use std::path::PathBuf;
use std::sync::OnceLock;

use plotters::style::{FontError, FontStyle, IntoFont};

use crate::PlotError;

/// The family name charts ask plotters for.
pub const FAMILY: &str = "semiclass";

/// Fonts tried in order when `SEMICLASS_FONT` is not set. CJK fonts first:
/// they also cover Latin, while DejaVu would draw Chinese as boxes.
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];

const NO_FONT: &str = "no font for chart labels: install a CJK font (Debian: apt-get install fonts-wqy-microhei) or set SEMICLASS_FONT to a .ttf/.ttc/.otf file";

/// Registers the chart font with plotters once per process.
pub fn ensure_registered() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(register)
        .clone()
        .map_err(PlotError::Font)
}

fn register() -> Result<(), String> {
    let path = find().ok_or(NO_FONT)?;
    let shown = path.display();
    let bytes = std::fs::read(&path).map_err(|e| format!("{shown}: cannot read font: {e}"))?;
    // plotters keeps fonts for the whole process and wants 'static bytes;
    // this runs once, so leaking one font file is the honest way to say so.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("{shown}: not a TrueType/OpenType font"))
}

fn find() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("SEMICLASS_FONT") {
        return Some(PathBuf::from(explicit));
    }
    CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Width in pixels of `text` drawn at `size` with the chart font.
pub(crate) fn text_width(text: &str, size: u32) -> u32 {
    (FAMILY, size as f64)
        .into_font()
        .box_size(text)
        .map_or(0, |(w, _)| w)
}

/// `text`, cut to `max_px` pixels with a trailing ellipsis when longer.
pub(crate) fn shorten(text: &str, size: u32, max_px: u32) -> Result<String, FontError> {
    let font = (FAMILY, size as f64).into_font();
    if font.box_size(text)?.0 <= max_px {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().chain(['…'].iter()).collect();
        if font.box_size(&candidate)?.0 <= max_px {
            return Ok(candidate);
        }
    }
    Ok("…".to_string())
}

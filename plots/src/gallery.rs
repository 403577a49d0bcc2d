//! A grid of images with captions: the most confident mistakes of an
//! evaluation, each with its true class, the prediction and its score.

use std::path::Path;

use image::RgbImage;
use image::imageops::FilterType;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{PlotError, font, save_rgb};

/// One picture and the lines written under it.
pub struct Tile<'a> {
    pub image: &'a RgbImage,
    pub caption: &'a [String],
}

const COLUMNS: usize = 4;
/// Pictures are scaled to fit this square, keeping their aspect.
const THUMB_PX: u32 = 180;
const PAD: u32 = 14;
const TITLE_PX: u32 = 48;
const CAPTION_PX: u32 = 14;
const LINE_PX: u32 = 19;
const MIN_WIDTH: u32 = 560;

/// Draws `tiles` in rows of four under `title` as a PNG at `path`. With no
/// tiles the picture holds the title alone.
pub fn gallery(path: &Path, title: &str, tiles: &[Tile]) -> Result<(), PlotError> {
    font::ensure_registered()?;
    let lines = tiles.iter().map(|t| t.caption.len()).max().unwrap_or(0) as u32;
    let cell = (THUMB_PX + 2 * PAD, THUMB_PX + PAD + lines * LINE_PX + PAD);
    let columns = tiles.len().clamp(1, COLUMNS) as u32;
    let rows = tiles.len().div_ceil(COLUMNS) as u32;
    let size = ((columns * cell.0).max(MIN_WIDTH), TITLE_PX + rows * cell.1);
    let mut buffer = vec![255u8; (size.0 * size.1 * 3) as usize];
    draw_text(&mut buffer, size, cell, title, tiles).map_err(|e| PlotError::Draw(e.to_string()))?;
    for (i, tile) in tiles.iter().enumerate() {
        let (col, row) = ((i % COLUMNS) as u32, (i / COLUMNS) as u32);
        let origin = (col * cell.0 + PAD, TITLE_PX + row * cell.1);
        paste(&mut buffer, size.0, &thumbnail(tile.image), origin);
    }
    save_rgb(path, buffer, size)
}

fn draw_text(
    buffer: &mut [u8],
    size: (u32, u32),
    cell: (u32, u32),
    title: &str,
    tiles: &[Tile],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buffer, size).into_drawing_area();
    root.fill(&WHITE)?;
    let centered = Pos::new(HPos::Center, VPos::Center);
    let style = TextStyle::from((font::FAMILY, 20).into_font()).pos(centered);
    root.draw(&Text::new(
        title,
        (size.0 as i32 / 2, TITLE_PX as i32 / 2),
        style,
    ))?;
    let caption = TextStyle::from((font::FAMILY, CAPTION_PX).into_font())
        .pos(Pos::new(HPos::Left, VPos::Top));
    for (i, tile) in tiles.iter().enumerate() {
        let x = (i % COLUMNS) as u32 * cell.0 + PAD;
        let y = TITLE_PX + (i / COLUMNS) as u32 * cell.1 + THUMB_PX + PAD / 2;
        for (l, line) in tile.caption.iter().enumerate() {
            let text = font::shorten(line, CAPTION_PX, THUMB_PX)?;
            let at = (x as i32, (y + l as u32 * LINE_PX) as i32);
            root.draw(&Text::new(text, at, caption.clone()))?;
        }
    }
    root.present()?;
    Ok(())
}

/// The picture scaled to fit the thumbnail square: small images are
/// enlarged with crisp pixels (a 28 px digit stays readable), large ones
/// reduced smoothly.
fn thumbnail(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let scale = THUMB_PX as f64 / w.max(h) as f64;
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).clamp(1, THUMB_PX),
        ((h as f64 * scale).round() as u32).clamp(1, THUMB_PX),
    );
    let filter = if scale >= 1.0 {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    image::imageops::resize(image, tw, th, filter)
}

/// Copies `image` into the RGB `buffer` of width `width`, centred in the
/// thumbnail square whose top-left corner is `origin`.
fn paste(buffer: &mut [u8], width: u32, image: &RgbImage, origin: (u32, u32)) {
    let x0 = origin.0 + (THUMB_PX - image.width()) / 2;
    let y0 = origin.1 + (THUMB_PX - image.height()) / 2;
    for (x, y, pixel) in image.enumerate_pixels() {
        let at = (((y0 + y) * width + x0 + x) * 3) as usize;
        buffer[at..at + 3].copy_from_slice(&pixel.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_laid_out_in_rows_of_four_with_their_pictures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mistakes.png");
        let red = RgbImage::from_pixel(28, 28, image::Rgb([255, 0, 0]));
        let wide = RgbImage::from_pixel(400, 100, image::Rgb([0, 0, 255]));
        let caption = vec![
            "true: 康乃馨".to_string(),
            "predicted: a very long class name that cannot fit".to_string(),
            "score 0.97".to_string(),
        ];
        let tiles: Vec<Tile> = (0..5)
            .map(|i| Tile {
                image: if i == 0 { &red } else { &wide },
                caption: &caption,
            })
            .collect();
        gallery(&path, "most confident mistakes", &tiles).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        let cell = (THUMB_PX + 2 * PAD, THUMB_PX + 2 * PAD + 3 * LINE_PX);
        assert_eq!(png.dimensions(), (4 * cell.0, TITLE_PX + 2 * cell.1));
        // The 28 px red square fills its whole thumbnail square.
        let centre = |col: u32, row: u32| {
            *png.get_pixel(
                col * cell.0 + PAD + THUMB_PX / 2,
                TITLE_PX + row * cell.1 + THUMB_PX / 2,
            )
        };
        assert_eq!(centre(0, 0), image::Rgb([255, 0, 0]));
        assert_eq!(centre(1, 0), image::Rgb([0, 0, 255]));
        assert_eq!(centre(0, 1), image::Rgb([0, 0, 255]));
        // The wide picture keeps its aspect: white above it.
        assert_eq!(
            *png.get_pixel(cell.0 + PAD + THUMB_PX / 2, TITLE_PX + 5),
            image::Rgb([255, 255, 255])
        );
    }

    #[test]
    fn no_tiles_still_makes_a_picture_with_the_title() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.png");
        gallery(&path, "no mistakes", &[]).unwrap();
        let png = image::open(&path).unwrap();
        assert_eq!((png.width(), png.height()), (MIN_WIDTH, TITLE_PX));
    }
}

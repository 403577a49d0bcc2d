//! Opening and decoding every listed image, in parallel.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use semiclass_preprocess::{DecodeLimits, decode_rgb};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::lists;
use crate::load::ListSet;
use crate::paths::{self, RelPath, Resolved};
use crate::problem::{Location, Problems};

/// What decoding every image found, for the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImageSummary {
    /// Distinct images listed.
    pub listed: usize,
    pub decoded: usize,
    pub failed: usize,
    pub min_width: Option<u32>,
    pub min_height: Option<u32>,
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    /// Pixel modes as stored in the files (e.g. `L8`: 1200).
    pub color_modes: BTreeMap<String, usize>,
}

/// Settings for the image pass.
#[derive(Debug, Clone, Copy)]
pub struct ImageRules {
    pub limits: DecodeLimits,
    /// Images with a side below this many pixels get a warning.
    pub min_side: u32,
}

struct Decoded {
    width: u32,
    height: u32,
    color: String,
    content: [u8; 32],
}

/// The first place each distinct image is listed, in list order.
fn first_mentions(lists: &ListSet) -> Vec<(RelPath, Location)> {
    let mut order = Vec::new();
    let mut seen = HashMap::new();
    let labeled = [
        (lists::TRAIN_FILE, &lists.train),
        (lists::VAL_FILE, &lists.val),
        (lists::TEST_FILE, &lists.test),
    ];
    let mut mention = |path: &RelPath, at: Location| {
        if !seen.contains_key(path) {
            seen.insert(path.clone(), ());
            order.push((path.clone(), at));
        }
    };
    for (file, entries) in labeled {
        for e in entries.iter().flatten() {
            mention(&e.path, Location::line(file, e.line));
        }
    }
    for e in lists.unlabeled.iter().flatten() {
        mention(&e.path, Location::line(lists::UNLABELED_FILE, e.line));
    }
    order
}

/// Decodes every listed image once, reports problems at the line that
/// first lists it, and summarises sizes and pixel modes.
pub fn check_images(
    root: &Path,
    lists: &ListSet,
    rules: ImageRules,
    progress: &dyn super::CheckProgress,
    problems: &mut Problems,
) -> ImageSummary {
    let mentions = first_mentions(lists);
    progress.images_to_decode(mentions.len());
    let results: Vec<Result<Decoded, (&'static str, String)>> = mentions
        .par_iter()
        .map(|(path, _)| {
            let result = inspect(root, path, rules.limits);
            progress.image_decoded();
            result
        })
        .collect();
    let mut summary = ImageSummary {
        listed: mentions.len(),
        ..ImageSummary::default()
    };
    let mut by_content: HashMap<[u8; 32], &Location> = HashMap::new();
    for ((path, at), result) in mentions.iter().zip(results) {
        match result {
            Ok(image) => {
                record(&mut summary, &image);
                warn_small(path, at, &image, rules.min_side, problems);
                warn_same_content(path, at, &image, &mut by_content, &mentions, problems);
            }
            Err((code, message)) => {
                summary.failed += 1;
                problems.error(at, code, message);
            }
        }
    }
    summary
}

fn record(summary: &mut ImageSummary, image: &Decoded) {
    summary.decoded += 1;
    let fold = |current: Option<u32>, v: u32, pick: fn(u32, u32) -> u32| {
        Some(current.map_or(v, |c| pick(c, v)))
    };
    summary.min_width = fold(summary.min_width, image.width, u32::min);
    summary.min_height = fold(summary.min_height, image.height, u32::min);
    summary.max_width = fold(summary.max_width, image.width, u32::max);
    summary.max_height = fold(summary.max_height, image.height, u32::max);
    *summary.color_modes.entry(image.color.clone()).or_default() += 1;
}

fn warn_small(
    path: &RelPath,
    at: &Location,
    image: &Decoded,
    min_side: u32,
    problems: &mut Problems,
) {
    if image.width < min_side || image.height < min_side {
        problems.warning(
            at,
            "small-image",
            format!(
                "{path} is only {}x{} px (below {min_side} px on a side); it carries little detail once upscaled",
                image.width, image.height
            ),
        );
    }
}

/// Identical bytes under two names in different splits leak labels into
/// validation or test just like the same path does.
fn warn_same_content<'a>(
    path: &RelPath,
    at: &'a Location,
    image: &Decoded,
    by_content: &mut HashMap<[u8; 32], &'a Location>,
    mentions: &[(RelPath, Location)],
    problems: &mut Problems,
) {
    match by_content.get(&image.content) {
        Some(first) if first.file != at.file => {
            let first_path = mentions.iter().find(|(_, l)| l == *first).map(|(p, _)| p);
            problems.warning(
                at,
                "duplicate-content",
                format!(
                    "{path} has the same bytes as {} ({first}); identical images in two splits inflate accuracy",
                    first_path.map(RelPath::as_str).unwrap_or("?"),
                ),
            );
        }
        Some(_) => {}
        None => {
            by_content.insert(image.content, at);
        }
    }
}

/// Resolves, reads and decodes one image. A path that leads outside the
/// dataset is refused before it is opened.
fn inspect(
    root: &Path,
    path: &RelPath,
    limits: DecodeLimits,
) -> Result<Decoded, (&'static str, String)> {
    let real = match paths::resolve(root, path) {
        Ok(Resolved::Inside(real)) => real,
        Ok(Resolved::Missing) => return Err(("missing-image", missing_message(root, path))),
        Ok(Resolved::Outside(target)) => {
            return Err((
                "path-outside-dataset",
                format!(
                    "{path} is a link to {}, outside the dataset folder; copy the image in instead",
                    target.display()
                ),
            ));
        }
        Err(e) => return Err(("unreadable-image", format!("cannot resolve {path}: {e}"))),
    };
    if !real.is_file() {
        return Err(("not-a-file", format!("{path} is not a regular file")));
    }
    let bytes = std::fs::read(&real)
        .map_err(|e| ("unreadable-image", format!("cannot read {path}: {e}")))?;
    let decoded = decode_rgb(&bytes, limits).map_err(|e| {
        let code = match e {
            semiclass_preprocess::DecodeError::TooManyPixels { .. } => "too-many-pixels",
            _ => "undecodable-image",
        };
        (code, format!("{path} does not decode: {e}"))
    })?;
    Ok(Decoded {
        width: decoded.rgb.width(),
        height: decoded.rgb.height(),
        color: format!("{:?}", decoded.source_color),
        content: Sha256::digest(&bytes).into(),
    })
}

/// "not found", with a hint when the intended file is obvious.
fn missing_message(root: &Path, path: &RelPath) -> String {
    let text = path.as_str();
    let mut message = format!("image not found: {text}");
    if let Some((stem, last)) = text.rsplit_once(char::is_whitespace)
        && last.parse::<usize>().is_ok()
        && root.join(stem).is_file()
    {
        message.push_str(&format!(
            " ({stem} exists: is '{last}' a stray class id? train_unlabeled.txt holds paths only)"
        ));
    } else if text.contains('\\') && root.join(text.replace('\\', "/")).is_file() {
        message.push_str(" (write paths with '/' separators, not '\\')");
    }
    message
}

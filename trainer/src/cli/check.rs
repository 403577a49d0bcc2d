//! `semiclass check DATASET [--out DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use semiclass_dataset::check::CheckProgress;
use semiclass_dataset::{CheckOptions, check_dataset, report};
use semiclass_preprocess::DecodeLimits;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The dataset folder (holding label.txt, train.txt, train_unlabeled.txt, val.txt).
    dataset: PathBuf,
    /// Where to write check_report.json and class_histogram.png [default: DATASET/check].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Refuse images whose header declares more pixels than this (decompression bombs).
    #[arg(long, default_value_t = semiclass_preprocess::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Warn about images with a side shorter than this many pixels.
    #[arg(long, default_value_t = 16)]
    min_side: u32,
    /// Warn when the largest train class has this many times the images of the smallest.
    #[arg(long, default_value_t = 10.0)]
    imbalance_ratio: f64,
    /// Show at most this many problems of one kind per file (the JSON report has all).
    #[arg(long, default_value_t = 50)]
    max_shown: usize,
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
struct Bar(ProgressBar);

impl CheckProgress for Bar {
    fn images_to_decode(&self, total: usize) {
        self.0.set_length(total as u64);
    }

    fn image_decoded(&self) {
        self.0.inc(1);
    }
}

/// Exit status 0 when the dataset has no errors, 1 when it has.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let options = CheckOptions {
        limits: DecodeLimits {
            max_pixels: args.max_pixels,
        },
        min_side: args.min_side,
        imbalance_ratio: args.imbalance_ratio,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("decoding {bar:40} {pos}/{len} images ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    let result = check_dataset(&args.dataset, &options, &Bar(bar.clone()));
    bar.finish_and_clear();
    let report = result?;
    for line in report::problem_lines(&report.problems, args.max_shown) {
        println!("{line}");
    }
    println!("{}", report::summary(&report));
    let out = args.out.unwrap_or_else(|| args.dataset.join("check"));
    let json = report::write_json(&report, &out).context("writing the check report")?;
    println!("report: {}", json.display());
    match report::write_histogram(&report, &out) {
        Ok(png) => println!("class histogram: {}", png.display()),
        // The JSON report is what matters; a missing font should not fail the check.
        Err(e) => eprintln!("semiclass: warning: no class histogram: {e}"),
    }
    Ok(if report.check_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

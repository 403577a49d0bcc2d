//! `semiclass demo-data fashion-mnist OUT`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use semiclass_dataset::fashion_mnist::{self, DemoOptions};

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Which data set to build.
    source_name: DemoSource,
    /// The dataset folder to create (must not exist, or be empty).
    out: PathBuf,
    /// Share of the non-validation train images that keep their label.
    #[arg(long, default_value_t = 0.1)]
    labeled_frac: f64,
    /// Validation images, stratified, taken from the official train split.
    #[arg(long, default_value_t = 5000)]
    val_count: usize,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder with the idx .gz files.
    #[arg(long, default_value = fashion_mnist::DEBIAN_DIR)]
    source: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DemoSource {
    /// Fashion-MNIST from Debian's dataset-fashion-mnist (MIT licence).
    FashionMnist,
}

pub fn run(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    let DemoSource::FashionMnist = args.source_name;
    let options = DemoOptions {
        source: args.source,
        labeled_frac: args.labeled_frac,
        val_count: args.val_count,
        seed: args.seed,
    };
    let summary = fashion_mnist::build(&args.out, &options)?;
    let verb = if summary.created {
        "built"
    } else {
        "already built"
    };
    println!(
        "{verb} {}: train {} labeled, train_unlabeled {}, val {}, test {}",
        args.out.display(),
        summary.train,
        summary.unlabeled,
        summary.val,
        summary.test
    );
    Ok(ExitCode::SUCCESS)
}

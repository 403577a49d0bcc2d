//! The serving benchmark behind `bench/serve-throughput.sh`: the same work
//! (a JPEG decoded, preprocessed, classified, top 5) measured side by side
//! in one run, at several concurrencies:
//! (a) a Rust loop linking the crates, no HTTP (`direct`);
//! (b) the FastAPI + uvicorn server a Python user would write
//!     (bench/python_server.py), at each number of workers asked for;
//! (c) semiclass-serve.
//! Each side's CPU per image and the load generator's own CPU are reported;
//! then semiclass-serve at 4x its concurrency cap must refuse with 429/503
//! only.

mod cpu;
mod direct;
mod load;
mod measure;
mod servers;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use clap::Parser;
use semiclass_exporter::OnnxModel;
use semiclass_exporter::package::{PackageRequest, write_package as write_package_files};
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::package::Target as PackageTarget;
use semiclass_serve::tokens::TokenStore;

use direct::DirectLoop;
use load::Target;
use measure::{Best, Measure, head, row};
use servers::{PythonRun, ServeRun, Spawned};

#[derive(Parser)]
struct Args {
    /// The ONNX model (input `input` [N,3,S,S], output `logits`).
    #[arg(long)]
    onnx: PathBuf,
    #[arg(long, default_value = "lcnet_100")]
    arch: String,
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// The image every request sends.
    #[arg(long)]
    image: PathBuf,
    /// The semiclass-serve binary.
    #[arg(long)]
    server: PathBuf,
    /// Scratch folder (package, tokens).
    #[arg(long)]
    work: PathBuf,
    /// ONNX Runtime threads in all, on every side: shared by the sessions
    /// of (a) and (c), by the workers of (b).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// ONNX Runtime sessions of (a) and (c).
    #[arg(long, default_value_t = 2)]
    sessions: usize,
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    #[arg(long, default_value_t = 2)]
    max_wait_ms: u64,
    /// Seconds measured per setting.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Rounds of every setting; the best round of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The concurrency cap of the overload run (driven at 4x).
    #[arg(long, default_value_t = 16)]
    cap: usize,
    /// The Python of a venv with FastAPI, uvicorn, Pillow, numpy and
    /// onnxruntime; without it side (b) is left out.
    #[arg(long)]
    python: Option<PathBuf>,
    /// uvicorn workers of (b) to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    python_workers: Vec<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (package, package_id) = write_package(&args)?;
    let tokens = args.work.join("tokens.json");
    let _ = std::fs::remove_file(&tokens);
    let (_, token) = TokenStore::new(&tokens).create("bench", 0)?;
    let image = std::fs::read(&args.image).with_context(|| args.image.display().to_string())?;
    let model = std::fs::read(&args.onnx)?;
    let per_session = (args.threads / args.sessions).max(1);
    println!(
        "model {} at {} px; {} ONNX Runtime threads per side ((a), (c): {} sessions x {per_session}); image {} ({} bytes); {cores} cores; {} s per setting, best of {} rounds",
        args.arch,
        args.size,
        args.threads,
        args.sessions,
        args.image.display(),
        image.len(),
        args.seconds,
        args.rounds
    );
    let library = std::env::var_os("ORT_DYLIB_PATH").context("set ORT_DYLIB_PATH")?;
    semiclass_serve::engine::init_runtime(Path::new(&library))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let direct = DirectLoop::new(
        &model,
        args.size,
        image.clone(),
        (args.sessions, per_session),
        cores,
    )?;
    let target = |server: &Spawned| Target {
        addr: server.addr,
        pid: server.pid(),
        uri: format!("/v1/models/{package_id}/predict?topk=5"),
        token: token.clone(),
        image: Bytes::from(image.clone()),
    };
    let serve_run = |cap| ServeRun {
        binary: &args.server,
        package: &package,
        tokens: &tokens,
        sessions: args.sessions,
        threads: per_session,
        max_batch: args.max_batch,
        max_wait_ms: args.max_wait_ms,
        cap,
    };
    let served = servers::semiclass_serve(&serve_run(256))?;
    let mut pythons = Vec::new();
    for &workers in args.python_workers.iter().filter(|_| args.python.is_some()) {
        let run = PythonRun {
            python: args.python.as_deref().unwrap_or(Path::new("python3")),
            onnx: &args.onnx,
            size: args.size,
            workers,
            threads: (args.threads / workers).max(1),
            token: &token,
        };
        let server = servers::python_server(&run)?;
        runtime.block_on(load::ready(&target(&server)))?;
        pythons.push((workers, server));
    }
    runtime.block_on(load::ready(&target(&served)))?;
    let mut best = Best::default();
    for _ in 0..args.rounds {
        for layout in inference_layouts(&args) {
            let alone = direct::ort_alone(&model, args.size, &image, layout, args.seconds)?;
            best.keep(&ort_alone_name(layout), alone);
        }
        // The sides one after the other at each concurrency: the noise of
        // a shared machine falls on all of them alike.
        for &c in &args.concurrency {
            best.keep(&direct_name(c), direct.run(c, args.seconds)?);
            for (workers, server) in &pythons {
                let m = runtime.block_on(load::load(&target(server), c, args.seconds, cores))?;
                best.keep(&python_name(*workers, c), m);
            }
            let m = runtime.block_on(load::load(&target(&served), c, args.seconds, cores))?;
            best.keep(&serve_name(c), m);
        }
    }
    let metrics = runtime.block_on(load::metrics(&target(&served)))?;
    print_batching(&metrics);
    drop((served, pythons));
    let overload = {
        let server = servers::semiclass_serve(&serve_run(args.cap))?;
        runtime.block_on(load::ready(&target(&server)))?;
        runtime.block_on(load::load(
            &target(&server),
            4 * args.cap,
            args.seconds,
            cores,
        ))?
    };
    head();
    for (name, m) in &best.0 {
        row(name, m);
    }
    let overload_name = format!(
        "(c) semiclass-serve, cap {} at concurrency {}",
        args.cap,
        4 * args.cap
    );
    row(&overload_name, &overload);
    summary(&args, &best, &overload, per_session)
}

/// The session layouts the sides run ((a) and (c): `sessions` x
/// `threads / sessions`; (b): one session per worker), and one session on
/// one thread for reference: ONNX Runtime alone is measured in each.
fn inference_layouts(args: &Args) -> Vec<(usize, usize)> {
    let per_session = (args.threads / args.sessions).max(1);
    let mut layouts = vec![(1, 1), (args.sessions, per_session)];
    if args.python.is_some() {
        layouts.extend(
            args.python_workers
                .iter()
                .map(|&w| (w, (args.threads / w).max(1))),
        );
    }
    layouts.sort();
    layouts.dedup();
    layouts
}

fn ort_alone_name((sessions, threads): (usize, usize)) -> String {
    format!(
        "ONNX Runtime alone on a preprocessed tensor, {sessions} session(s) in parallel x {threads} thread(s), batch 1"
    )
}

fn direct_name(c: usize) -> String {
    format!("(a) Rust loop, same work, concurrency {c}")
}

fn python_name(workers: usize, c: usize) -> String {
    format!("(b) FastAPI + uvicorn, {workers} workers, concurrency {c}")
}

fn serve_name(c: usize) -> String {
    format!("(c) semiclass-serve, concurrency {c}")
}

/// The server's batching over all rounds, from its metrics.
fn print_batching(metrics: &str) {
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let images = value("semiclass_images_total");
    let batches = value("semiclass_batches_total");
    println!(
        "semiclass-serve, all rounds: {images} images in {batches} batches ({:.2} a batch), ONNX Runtime {:.2} ms per image",
        images / batches.max(1.0),
        value("semiclass_inference_seconds_total") * 1e3 / images.max(1.0)
    );
}

fn summary(args: &Args, best: &Best, overload: &Measure, threads: usize) -> Result<()> {
    println!();
    let get = |name: &str| best.get(name).cloned().unwrap_or_default();
    let (served, direct) = (get(&serve_name(16)), get(&direct_name(16)));
    println!(
        "concurrency 16: semiclass-serve / (a) the Rust loop = {:.2} (goal >= 0.9)",
        served.images_per_s / direct.images_per_s
    );
    // Each side against ONNX Runtime alone in its own session layout, so
    // that what two parallel sessions cost each other is not counted as
    // work outside inference.
    let inference = |layout| get(&ort_alone_name(layout)).cpu_ms_per_image;
    let ours_outside = served.cpu_ms_per_image - inference((args.sessions, threads));
    for &workers in args.python_workers.iter().filter(|_| args.python.is_some()) {
        let python = get(&python_name(workers, 16));
        let layout = (workers, (args.threads / workers).max(1));
        let theirs_outside = python.cpu_ms_per_image - inference(layout);
        println!(
            "concurrency 16 against (b) with {workers} workers: throughput {:.2}x; CPU per image outside inference {ours_outside:.2} ms (inference alone {:.2} ms) vs {theirs_outside:.2} ms (inference alone {:.2} ms) = {:.2} (goal <= 0.5)",
            served.images_per_s / python.images_per_s,
            inference((args.sessions, threads)),
            inference(layout),
            ours_outside / theirs_outside
        );
        for &c in &args.concurrency {
            let (ours, theirs) = (get(&serve_name(c)), get(&python_name(workers, c)));
            println!(
                "  concurrency {c}: p99 {:.1} ms vs {:.1} ms",
                ours.p99_ms, theirs.p99_ms
            );
        }
    }
    let refused: usize = overload
        .statuses
        .iter()
        .filter(|(s, _)| matches!(s, 429 | 503))
        .map(|(_, n)| n)
        .sum();
    let errors: usize = overload
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    println!("at 4x the cap: {refused} answers 429/503, {errors} other 5xx");
    if errors > 0 || refused == 0 {
        bail!("the overload run should refuse with 429/503 and never answer another 5xx");
    }
    Ok(())
}

/// The package of the ONNX model (and its id) as `semiclass export --without-sdk`
/// writes it (through the exporter's writer): 1000 classes, ImageNet
/// normalisation, the timm eval crop.
fn write_package(args: &Args) -> Result<(PathBuf, String)> {
    let classes = (0..1000).map(|i| format!("class {i}")).collect();
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let preprocess = PreprocessSpec::for_input(args.size, mean, std);
    let meta = CheckpointMeta::untrained(&args.arch, classes, args.size, preprocess, "bench");
    let onnx = std::fs::read(&args.onnx).with_context(|| args.onnx.display().to_string())?;
    let request = PackageRequest {
        target: PackageTarget::CpuX86_64,
        out_dir: &args.work.join("package"),
        runtime_dir: None,
        sdk: None,
        vendor_keys: None,
        replace: true,
    };
    let built = write_package_files(&OnnxModel::prebuilt(onnx, meta), &request)?;
    // The exporter names the package (its id is in the manifest), as
    // `semiclass export` does; the server routes by that id.
    Ok((built.path, built.manifest.package_id))
}

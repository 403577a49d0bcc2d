//! `semiclass eval CKPT|@nick --data DIR [--split val|test | --list FILE]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use semiclass_dataset::lists::LabeledEntry;
use semiclass_dataset::{CheckOptions, Dataset, check_list, report};
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_preprocess::{DecodeLimits, decode_rgb};
use semiclass_registry::{EvalSource, NewEval, Registry, Resolved, resolve_checkpoint};
use semiclass_trainer::checkpoint::read_meta;
use semiclass_trainer::data::loader::Transform;
use semiclass_trainer::data::store::{ImageStore, StoreSpec, Use};
use semiclass_trainer::engine::evaluate::{EvalInput, evaluate_in_detail};
use semiclass_trainer::engine::setup::{network_from_checkpoint, select_device};
use semiclass_trainer::eval_report::{self, CheckpointInfo, EvalReport};
use semiclass_trainer::registry_hooks;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The checkpoint: a path, or @nickname.
    checkpoint: String,
    /// The dataset folder (its label.txt gives the class ids).
    #[arg(long)]
    data: PathBuf,
    /// Which list of the dataset to evaluate on [default: test].
    #[arg(long, value_enum, conflicts_with = "list")]
    split: Option<Split>,
    /// A list file of your own ("path id" lines, paths relative to --data), checked like test.txt first.
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// Where to write the report [default: RUN_DIR/evals/CHECKPOINT-LIST-TIME].
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Threads decoding images [default: one per CPU].
    #[arg(long)]
    workers: Option<usize>,
    /// How many of the most confident mistakes mistakes.png shows.
    #[arg(long, default_value_t = 16)]
    mistakes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Split {
    Val,
    Test,
}

/// The images to evaluate on, checked.
struct Items {
    root: PathBuf,
    source: EvalSource,
    /// How the source is named in the report: `test.txt`, or the list path.
    shown: String,
    classes: Vec<String>,
    entries: Vec<LabeledEntry>,
}

/// Exit status 0 when evaluated; 1 when the custom list has errors.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_hooks::open_registry();
    let resolved = resolve_checkpoint(&args.checkpoint, registry.as_ref().map_err(String::as_str))?;
    let mut registry = registry
        .inspect_err(|e| {
            eprintln!("semiclass: warning: run registry: {e}; this evaluation is not recorded")
        })
        .ok();
    let meta = read_meta(&resolved.path)?;
    let Some(items) = items(&args)? else {
        return Ok(ExitCode::from(1));
    };
    check_classes(&meta, &items)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_out(&resolved.path, &items.source)?,
    };
    let task = registry
        .as_mut()
        .and_then(|r| begin_task(r, &resolved, &meta, &items, &out));
    let result = evaluate(&args, &resolved, &meta, &items, &out);
    if let (Some(registry), Some(task)) = (registry.as_mut(), task) {
        let recorded = match &result {
            Ok(summary) => registry.finish_eval(task, summary),
            Err(e) => registry.fail_eval(task, &semiclass_manifest::error_line(e.as_ref())),
        };
        if let Err(e) = recorded {
            eprintln!("semiclass: warning: run registry: {e}");
        }
    }
    result.map(|_| ExitCode::SUCCESS)
}

/// The split's entries, or the custom list's once it passed the check
/// (`None` when it did not: its problems are printed like `semiclass check`'s).
fn items(args: &EvalArgs) -> anyhow::Result<Option<Items>> {
    let Some(list) = &args.list else {
        let split = args.split.unwrap_or(Split::Test);
        return split_items(&args.data, split).map(Some);
    };
    let report = check_list(&args.data, list, &CheckOptions::default(), &())?;
    for line in report::problem_lines(&report.problems, 50) {
        println!("{line}");
    }
    if !report.check_pass {
        let json = report::write_json(&report, &list_check_dir(list))?;
        eprintln!(
            "semiclass: {}: {} error(s), {} warning(s) (all in {}); fix the list and evaluate again",
            report.list,
            report.errors,
            report.warnings,
            json.display()
        );
        return Ok(None);
    }
    let path = std::path::absolute(list)?.canonicalize()?;
    Ok(Some(Items {
        root: report.dataset,
        source: EvalSource::List(path),
        shown: report.list,
        classes: report.class_names,
        entries: report.entries,
    }))
}

/// Where the check report of a failing list goes: next to the list.
fn list_check_dir(list: &Path) -> PathBuf {
    let stem = list
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    list.with_file_name(format!("{stem}-check"))
}

fn split_items(data: &Path, split: Split) -> anyhow::Result<Items> {
    let dataset = Dataset::open(data)?;
    let (name, entries) = match split {
        Split::Val => ("val", Some(dataset.val)),
        Split::Test => ("test", dataset.test),
    };
    let entries = entries.with_context(|| {
        format!(
            "{}: no test.txt; evaluate with --split val or --list FILE",
            dataset.root.display()
        )
    })?;
    Ok(Items {
        root: dataset.root,
        source: EvalSource::Split(name.into()),
        shown: format!("{name}.txt"),
        classes: dataset.classes,
        entries,
    })
}

/// The dataset's classes must be the checkpoint's, id for id.
fn check_classes(meta: &CheckpointMeta, items: &Items) -> anyhow::Result<()> {
    if items.entries.is_empty() {
        bail!("{}: no images to evaluate on", items.shown);
    }
    if let Some(problem) = meta.class_count_problem(&items.root, &items.classes) {
        bail!("{problem}");
    }
    if items.classes != meta.class_names {
        eprintln!(
            "semiclass: warning: the class names of label.txt differ from the checkpoint's; ids are compared, the report uses label.txt's names"
        );
    }
    Ok(())
}

/// `RUN_DIR/evals/best-test-20261128-094512` for a checkpoint in a run's
/// `checkpoints/` folder; next to the checkpoint otherwise.
fn default_out(checkpoint: &Path, source: &EvalSource) -> anyhow::Result<PathBuf> {
    let folder = checkpoint
        .parent()
        .context("checkpoint path has no folder")?;
    let base = match folder.file_name() {
        Some(name) if name == "checkpoints" => folder.parent().unwrap_or(folder),
        _ => folder,
    };
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let on = match source {
        EvalSource::Split(split) => split.clone(),
        EvalSource::List(list) => stem(list),
    };
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let stamp: String = semiclass_manifest::checkpoint::rfc3339_utc(unix)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!(
        "{}-{on}-{}-{}",
        stem(checkpoint),
        &stamp[..8],
        &stamp[8..14]
    );
    let mut out = base.join("evals").join(&name);
    for n in 2.. {
        if !out.exists() {
            break;
        }
        out = base.join("evals").join(format!("{name}-{n}"));
    }
    Ok(out)
}

/// Records the task as running; a registry failure only loses the record.
fn begin_task(
    registry: &mut Registry,
    resolved: &Resolved,
    meta: &CheckpointMeta,
    items: &Items,
    out: &Path,
) -> Option<i64> {
    let begin = |registry: &mut Registry| -> Result<i64, semiclass_registry::RegistryError> {
        let checkpoint_id = registry_hooks::recorded_id(registry, resolved, meta)?;
        let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
        registry.begin_eval(&NewEval {
            checkpoint_id,
            dataset: &items.root,
            source: &items.source,
            out_dir: &out,
        })
    };
    begin(registry)
        .inspect_err(|e| {
            eprintln!("semiclass: warning: run registry: {e}; this evaluation is not recorded")
        })
        .ok()
}

/// Evaluates, prints the table, writes the report; returns its summary.
fn evaluate(
    args: &EvalArgs,
    resolved: &Resolved,
    meta: &CheckpointMeta,
    items: &Items,
    out: &Path,
) -> anyhow::Result<serde_json::Value> {
    let device = select_device(&args.device)?;
    let (net, _) = network_from_checkpoint(&resolved.path, device)?;
    let paths: Vec<String> = items
        .entries
        .iter()
        .map(|e| e.path.as_str().to_string())
        .collect();
    // No cache: every image is decoded once, by the loader's workers.
    let spec = StoreSpec {
        input_size: meta.input_size,
        eval: meta.preprocess.clone(),
        budget_bytes: 0,
    };
    let images = paths
        .iter()
        .map(|p| (PathBuf::from(p), Use::Eval))
        .collect();
    let store = ImageStore::load(&items.root, images, &spec, &|| {})?;
    let labeled: Vec<(usize, i64)> = items
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (i, e.class_id as i64))
        .collect();
    let input = EvalInput {
        store: Arc::new(store),
        transform: Arc::new(Transform {
            input_size: meta.input_size,
            eval: meta.preprocess.clone(),
            // Evaluation views are never augmented.
            flip: false,
        }),
        items: &labeled,
        batch_size: args.batch_size.max(1),
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    println!(
        "evaluating {} on {} images of {}",
        resolved.path.display(),
        labeled.len(),
        items.shown
    );
    let result = evaluate_in_detail(&net, &input, args.mistakes)?;
    let checkpoint = CheckpointInfo {
        path: resolved.path.clone(),
        sha256: resolved.sha256.clone(),
        nickname: resolved.nickname.clone(),
        model: meta.model.clone(),
        stage: meta.stage.clone(),
        epoch: meta.epoch,
    };
    let source = (items.root.clone(), items.shown.clone());
    let report = eval_report::build_report(checkpoint, source, &items.classes, &result, &paths);
    print!("{}", eval_report::table(&report));
    write_report(&report, items, out)?;
    Ok(report.summary(&std::path::absolute(out)?))
}

fn write_report(report: &EvalReport, items: &Items, out: &Path) -> anyhow::Result<()> {
    eval_report::write_tables(report, out)?;
    let images: Vec<image::RgbImage> = report
        .mistakes
        .iter()
        .map(|m| {
            let path = items.root.join(&m.path);
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            Ok(decode_rgb(&bytes, DecodeLimits::default())
                .with_context(|| format!("{}", path.display()))?
                .rgb)
        })
        .collect::<anyhow::Result<_>>()?;
    for warning in eval_report::write_pictures(report, &items.classes, &images, out) {
        eprintln!("semiclass: warning: {warning}");
    }
    println!("report: {}", out.join(eval_report::REPORT_FILE).display());
    Ok(())
}

//! `semiclass train --mode large` end to end on a tiny two-class dataset.

use std::path::Path;

use image::{DynamicImage, ImageFormat};

use crate::common::{Run, TinyDataset, semiclass};

/// Dark images are class 0, bright ones class 1: learnable in a few steps.
pub(crate) fn two_class_dataset() -> TinyDataset {
    let data = TinyDataset::new();
    let lines = |kind: &str, count: usize| -> Vec<(String, usize)> {
        (0..count)
            .map(|i| {
                let class = i % 2;
                let path = format!("images/{kind}{i}.png");
                let level = if class == 0 { 30 } else { 220 } as u8;
                let img = image::GrayImage::from_fn(28, 28, |x, y| {
                    image::Luma([level.wrapping_add(((x * 7 + y * 3 + i as u32) % 20) as u8)])
                });
                data.save(&path, &DynamicImage::ImageLuma8(img), ImageFormat::Png);
                (path, class)
            })
            .collect()
    };
    let labeled = |items: Vec<(String, usize)>| {
        items
            .iter()
            .map(|(p, c)| format!("{p} {c}\n"))
            .collect::<String>()
    };
    data.write("label.txt", "0 dark\n1 bright\n");
    data.write("train.txt", &labeled(lines("t", 16)));
    data.write("val.txt", &labeled(lines("v", 8)));
    data.write("test.txt", &labeled(lines("x", 8)));
    let unlabeled: String = lines("u", 16)
        .iter()
        .map(|(p, _)| format!("{p}\n"))
        .collect();
    data.write("train_unlabeled.txt", &unlabeled);
    data
}

pub(crate) fn train(data: &TinyDataset, runs: &Path, extra: &[&str]) -> Run {
    let mut args = train_args(data, runs);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    semiclass(&args)
}

pub(crate) fn train_args(data: &TinyDataset, runs: &Path) -> Vec<String> {
    let mut args = vec![
        "train",
        "--mode",
        "large",
        "--data",
        data.arg(),
        "-o",
        "run.name=tiny",
        "-o",
        "large.epochs=2",
        "-o",
        "large.ssl.epochs=1",
        "-o",
        "large.batch_size=8",
        "-o",
        "large.ssl.mu=1",
        "-o",
        "large.log_interval=1",
        "-o",
        "large.ssl.p_cutoff=0.5",
        "-o",
        "data.workers=1",
        "-o",
        "run.device=cpu",
    ];
    let dir = format!("run.dir={}", runs.display());
    args.extend(["-o", dir.as_str()]);
    args.into_iter().map(String::from).collect()
}

/// The `semiclass` metadata of a checkpoint, read from its safetensors header.
pub(crate) fn checkpoint_meta(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    serde_json::from_str(header["__metadata__"]["semiclass"].as_str().unwrap()).unwrap()
}

#[test]
fn a_large_run_trains_both_stages_and_keeps_the_best() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let run = train(
        &data,
        runs.path(),
        &["-o", "large.model=resnet18", "-o", "large.input_size=32"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let out = &run.stdout;
    // The command re-executed itself with a bounded OpenMP spin.
    assert!(out.contains("(OpenMP: GOMP_SPINCOUNT=3000)"), "{out}");
    assert!(out.contains("[supervised] epoch 1 step 1/4"), "{out}");
    assert!(out.contains("[ssl] epoch 1 step 2/2"), "{out}");
    assert!(out.contains("val top-1"), "{out}");
    assert!(out.contains("large: test.txt top-1"), "{out}");
    let dir = runs.path().join("tiny");
    assert!(dir.join("config.yaml").is_file());
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("stage,epoch,step,lr,sup_loss"),
        "{metrics}"
    );
    // Steps run on across stages: the ssl stage's 2 steps follow the supervised 4.
    assert!(
        metrics.lines().any(|l| l.starts_with("ssl,1,6,")),
        "{metrics}"
    );
    assert!(image::open(dir.join("curves.png")).unwrap().width() > 500);
    for file in ["supervised-best", "supervised-last", "ssl-best", "best"] {
        assert!(
            dir.join(format!("checkpoints/{file}.safetensors"))
                .is_file(),
            "{file}"
        );
    }
    let meta = checkpoint_meta(&dir.join("checkpoints/best.safetensors"));
    assert_eq!(meta["model"], "resnet18");
    assert_eq!(meta["class_names"], serde_json::json!(["dark", "bright"]));
    assert!(meta["metrics"]["val_top1"].as_f64().unwrap() >= 0.0);
}

#[test]
fn the_first_stage_stops_on_a_plateau_and_the_semi_supervised_one_runs_to_its_end() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    // An evaluation every 2 steps: dark against bright is learnt in a few
    // steps, after which val cannot get better.
    let patience = [
        "-o",
        "large.epochs=10",
        "-o",
        "large.evals_per_stage=10",
        "-o",
        "large.patience=2",
        "-o",
        "large.lr=0.01",
    ];
    let run = train(&data, runs.path(), &patience);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("supervised: stopped at step"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("[ssl] epoch 1 step 2/2"),
        "{}",
        run.all()
    );
    let summary = std::fs::read_to_string(runs.path().join("tiny/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let steps = |i: usize| summary["stages"][i]["steps"].as_u64().unwrap();
    assert!(steps(0) < 20, "{summary}");
    assert_eq!(steps(1), 2, "{summary}");
    assert_eq!(summary["flip"], serde_json::json!(true), "{summary}");
}

#[test]
fn an_existing_run_is_never_overwritten() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runs.path().join("tiny")).unwrap();
    std::fs::write(runs.path().join("tiny/notes.txt"), "mine").unwrap();
    let run = train(&data, runs.path(), &[]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("a run already exists there"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(runs.path().join("tiny/notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_class_count_that_disagrees_with_label_txt_is_refused() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let run = train(&data, runs.path(), &["-o", "large.num_classes=3"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("num_classes is 3 in the config but label.txt defines 2 classes"),
        "{}",
        run.stderr
    );
}

/// Starts `semiclass ARGS`, kills it (SIGKILL: no chance to save anything
/// more) as soon as the first stage's state file exists in `run`, and
/// returns the latest state file of `stages` (latest stage first).
pub(crate) fn kill_once_saved(args: &[String], run: &Path, stages: &[&str]) -> std::path::PathBuf {
    let first = run.join(format!(
        "checkpoints/{}-last.state.safetensors",
        stages.last().unwrap()
    ));
    let mut child = crate::common::command("semiclass")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !first.exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stages
        .iter()
        .map(|s| run.join(format!("checkpoints/{s}-last.state.safetensors")))
        .find(|p| p.exists())
        .expect("a state file was written before the kill")
}

/// Tensors of a checkpoint without its metadata (the header's
/// `__metadata__` holds creation times).
pub(crate) fn checkpoint_tensors(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + len..].to_vec()
}

#[test]
fn a_run_killed_and_resumed_ends_exactly_like_an_uninterrupted_one() {
    let data = two_class_dataset();
    let uninterrupted = tempfile::tempdir().unwrap();
    let run = train(&data, uninterrupted.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());

    let killed = tempfile::tempdir().unwrap();
    let dir = killed.path().join("tiny");
    let latest = kill_once_saved(
        &train_args(&data, killed.path()),
        &dir,
        &["ssl", "supervised"],
    );
    let resumed = semiclass(&[
        "train",
        "--mode",
        "large",
        "--resume",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    let test_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("large: test.txt"))
            .unwrap()
            .to_string()
    };
    assert_eq!(test_line(&resumed.stdout), test_line(&run.stdout));
    let best = |root: &Path| checkpoint_tensors(&root.join("tiny/checkpoints/best.safetensors"));
    assert!(
        best(killed.path()) == best(uninterrupted.path()),
        "resumed weights differ"
    );
}

#[test]
fn sigint_saves_a_resumable_state_and_exits_cleanly() {
    use std::io::BufRead;
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let mut args = train_args(&data, runs.path());
    // 30 steps, evaluated only at the end: the signal comes mid-epoch,
    // long before any checkpoint would have been written.
    let extra = [
        "large.epochs=15",
        "large.ssl.epochs=0",
        "large.eval_interval=1000",
    ];
    args.extend(extra.iter().flat_map(|o| ["-o".to_string(), o.to_string()]));
    let mut child = crate::common::command("semiclass")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains(" step 3/30 ") {
        assert!(
            stdout.read_line(&mut text).unwrap() > 0,
            "ended early: {text}"
        );
    }
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{text}");
    assert!(
        text.contains("interrupted: resume with `semiclass train --mode large --resume"),
        "{text}"
    );
    let last_logged = text
        .lines()
        .filter_map(|l| {
            l.split(" step ")
                .nth(1)?
                .split('/')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(
        last_logged < 200,
        "the run finished before the signal: {text}"
    );
    // The resumed run continues right after the last step done.
    let state = runs
        .path()
        .join("tiny/checkpoints/supervised-last.state.safetensors");
    let resumed = crate::common::semiclass(&[
        "train",
        "--mode",
        "large",
        "--resume",
        state.to_str().unwrap(),
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    let first = resumed
        .stdout
        .lines()
        .find(|l| l.starts_with("[supervised] epoch"))
        .unwrap();
    assert!(
        first.contains(&format!(" step {}/30 ", last_logged + 1)),
        "{first} after {last_logged}"
    );
}

#[test]
fn a_diverging_loss_stops_with_the_step_and_the_last_good_checkpoint() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let run = train(
        &data,
        runs.path(),
        &["-o", "large.lr=1e38", "-o", "large.warmup_epochs=0"],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    let err = &run.stderr;
    assert!(err.contains("the loss became"), "{err}");
    assert!(err.contains("at step"), "{err}");
    assert!(err.contains("last good checkpoint:"), "{err}");
    assert!(err.contains("Lower the learning rate"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

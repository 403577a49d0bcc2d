//! The run registry end to end: a training recorded, `eval` on a split and
//! on a list of one's own, `mark`/`unmark`/`marks` with history, `@nick`
//! resolution refusing changed files, several processes writing at once.

use std::path::{Path, PathBuf};

use crate::common::{Run, TinyDataset, command, semiclass};
use crate::train::{train_args, two_class_dataset};

/// `semiclass --registry REGISTRY ARGS...`.
fn with_registry(registry: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--registry", registry.to_str().unwrap()];
    all.extend_from_slice(args);
    semiclass(&all)
}

/// A semiclass checkpoint without real weights: enough for `mark`, which
/// reads only the metadata of a checkpoint.
fn fake_checkpoint(path: &Path, stage: &str, val_top1: f64) {
    let meta = serde_json::json!({
        "format_version": 1, "model": "resnet18", "num_classes": 2, "input_size": 32,
        "class_names": ["dark", "bright"],
        "preprocess": {"resize": 32, "crop": 32, "interpolation": "bilinear",
                       "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "role": "large", "stage": stage, "epoch": 1, "step": 4,
        "metrics": {"val_top1": val_top1}, "weights": "ema",
        "created": "2026-01-01T00:00:00Z", "created_unix": 1767225600u64,
    });
    let header = serde_json::json!({
        "__metadata__": {"semiclass": meta.to_string()},
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 4]);
    std::fs::write(path, bytes).unwrap();
}

fn report_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .expect("a report line");
    Path::new(line).parent().unwrap().to_path_buf()
}

/// Trains the tiny two-class model briefly (one supervised epoch) with
/// `registry`; returns the run folder.
fn trained(data: &TinyDataset, runs: &Path, registry: &Path) -> PathBuf {
    let mut args = vec!["--registry".to_string(), registry.display().to_string()];
    args.extend(train_args(data, runs));
    args.extend(["-o", "large.epochs=1", "-o", "large.ssl.epochs=0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = semiclass(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    runs.join("tiny")
}

#[test]
fn a_training_is_recorded_then_evaluated_marked_and_refused_once_changed() {
    let data = two_class_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.sqlite");
    let run_dir = trained(&data, tmp.path(), &registry);
    let best = run_dir.join("checkpoints/best.safetensors");
    let best = best.to_str().unwrap();

    let runs = with_registry(&registry, &["runs"]);
    assert!(
        runs.stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("tiny  large  finished"),
        "{}",
        runs.all()
    );
    let show = with_registry(&registry, &["runs", "show", "1"]);
    for expected in [
        "status:  finished",
        "checkpoints/supervised-best.safetensors",
        "checkpoints/best.safetensors",
        "ssl:",
    ] {
        assert!(show.stdout.contains(expected), "{expected}\n{}", show.all());
    }

    let eval = with_registry(
        &registry,
        &["eval", best, "--data", data.arg(), "--device", "cpu"],
    );
    assert_eq!(eval.code, 0, "{}", eval.all());
    assert!(
        eval.stdout.contains("test.txt: 8 images, top-1 "),
        "{}",
        eval.stdout
    );
    assert!(eval.stdout.contains("macro avg"), "{}", eval.stdout);
    let out = report_dir(&eval.stdout);
    assert!(out.starts_with(run_dir.join("evals")), "{}", out.display());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["count"], 8);
    assert_eq!(report["classes"][1]["name"], "bright");
    let matrix: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(matrix, 8);
    let answers = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert_eq!(answers.lines().count(), 1 + 8, "{answers}");
    let csv = std::fs::read_to_string(out.join("per_class.csv")).unwrap();
    assert!(
        csv.starts_with("class_id,class,support,predicted,precision,recall,f1\n0,dark,4,"),
        "{csv}"
    );
    for png in [
        "confusion_counts.png",
        "confusion_normalized.png",
        "mistakes.png",
    ] {
        assert!(image::open(out.join(png)).is_ok(), "{png}");
    }

    let mark = with_registry(&registry, &["mark", best, "best-tiny", "--note", "e2e"]);
    assert_eq!(mark.code, 0, "{}", mark.all());
    assert!(
        mark.stdout.starts_with("marked @best-tiny: "),
        "{}",
        mark.stdout
    );
    let on_val = with_registry(
        &registry,
        &[
            "eval",
            "@best-tiny",
            "--data",
            data.arg(),
            "--split",
            "val",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(on_val.code, 0, "{}", on_val.all());
    assert!(
        on_val.stdout.contains("val.txt: 8 images"),
        "{}",
        on_val.stdout
    );
    let evals = with_registry(&registry, &["evals", "--ckpt", "@best-tiny"]);
    let rows: Vec<&str> = evals.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", evals.all());
    assert!(
        rows[0].contains("finished  val") && rows[1].contains("finished  test"),
        "{}",
        evals.stdout
    );
    // --resume @nick continues the run of that checkpoint from its latest state.
    let resumed = with_registry(
        &registry,
        &["train", "--mode", "large", "--resume", "@best-tiny"],
    );
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    let expected = format!("run: {}", run_dir.display());
    assert!(resumed.stdout.contains(&expected), "{}", resumed.all());

    // A copy marked, then changed: refused by nickname and by path.
    let copy = tmp.path().join("copy.safetensors");
    std::fs::copy(best, &copy).unwrap();
    assert_eq!(
        with_registry(&registry, &["mark", copy.to_str().unwrap(), "copy"]).code,
        0
    );
    let mut bytes = std::fs::read(&copy).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    for arg in ["@copy", copy.to_str().unwrap()] {
        let refused = with_registry(
            &registry,
            &["eval", arg, "--data", data.arg(), "--device", "cpu"],
        );
        assert_eq!(refused.code, 2, "{}", refused.all());
        assert!(
            refused
                .stderr
                .contains("the file changed since the registry recorded it"),
            "{}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains(&copy.display().to_string()),
            "{}",
            refused.stderr
        );
    }
}

/// `semiclass eval CKPT --data DATA --list LIST EXTRA...`.
fn eval_list(registry: &Path, ckpt: &Path, data: &TinyDataset, list: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["eval", ckpt.to_str().unwrap(), "--data", data.arg()];
    args.extend(["--list", list.to_str().unwrap()]);
    args.extend_from_slice(extra);
    with_registry(registry, &args)
}

#[test]
fn a_custom_list_is_checked_like_test_txt_before_evaluating() {
    let data = two_class_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.sqlite");
    let run_dir = trained(&data, tmp.path(), &registry);
    let best = run_dir.join("checkpoints/best.safetensors");
    let bad = tmp.path().join("bad list.txt");
    std::fs::write(
        &bad,
        "images/t0.png 0\nimages/missing.png 1\nimages/x1.png 9\n",
    )
    .unwrap();
    let run = eval_list(&registry, &best, &data, &bad, &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let shown = bad.display().to_string();
    for expected in [
        format!("{shown}:1: error: images/t0.png is also in train.txt:1"),
        format!("{shown}:2: error: image not found: images/missing.png"),
        format!("{shown}:3: error: class id 9 is not defined in label.txt"),
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&expected)),
            "{expected}\n{}",
            run.all()
        );
    }
    assert!(
        with_registry(&registry, &["evals"]).stdout.lines().count() == 1,
        "no task for a refused list"
    );

    let good = tmp.path().join("mine.txt");
    std::fs::write(&good, "images/x0.png 0\r\nimages/x1.png 1\n").unwrap();
    let out = tmp.path().join("report");
    let run = eval_list(
        &registry,
        &best,
        &data,
        &good,
        &["--out", out.to_str().unwrap(), "--device", "cpu"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("{}: 2 images", good.display())),
        "{}",
        run.stdout
    );
    assert!(out.join("report.json").is_file());
    let evals = with_registry(&registry, &["evals"]).stdout;
    assert!(
        evals.contains(&format!("finished  {}", good.display())),
        "{evals}"
    );
}

#[test]
fn marks_move_keep_their_history_and_check_their_syntax() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.sqlite");
    let (a, b) = (
        tmp.path().join("a.safetensors"),
        tmp.path().join("b.safetensors"),
    );
    fake_checkpoint(&a, "supervised", 0.5);
    fake_checkpoint(&b, "ssl", 0.75);
    let mark = |ckpt: &Path, nick: &str, note: &str| {
        with_registry(
            &registry,
            &["mark", ckpt.to_str().unwrap(), nick, "--note", note],
        )
    };
    assert_eq!(mark(&a, "best", "first").code, 0);
    let moved = mark(&b, "@best", "better");
    assert!(
        moved.stdout.starts_with(&format!(
            "moved @best from {} to {}",
            a.display(),
            b.display()
        )),
        "{}",
        moved.all()
    );
    let marks = with_registry(&registry, &["marks"]).stdout;
    assert!(
        marks
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("@best     75.00%     resnet18  ssl"),
        "{marks}"
    );
    assert_eq!(with_registry(&registry, &["unmark", "best"]).code, 0);
    let history = with_registry(&registry, &["marks", "--history", "best"]).stdout;
    let actions: Vec<&str> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(actions, ["mark", "move", "unmark"], "{history}");
    assert!(history.contains("better"), "{history}");

    let bad = mark(&a, "best one", "x");
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("'best one': the nickname has ' '"),
        "{}",
        bad.stderr
    );
    let unknown = with_registry(&registry, &["unmark", "nobody"]);
    assert!(
        unknown.stderr.contains("@nobody: no such nickname"),
        "{}",
        unknown.stderr
    );
    let not_checkpoint = tmp.path().join("notes.txt");
    std::fs::write(&not_checkpoint, "hello").unwrap();
    assert_eq!(mark(&not_checkpoint, "n", "").code, 2);
}

#[test]
fn the_registry_is_where_the_flag_or_else_the_variable_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (by_env, by_flag) = (
        tmp.path().join("env.sqlite"),
        tmp.path().join("flag.sqlite"),
    );
    let ckpt = tmp.path().join("a.safetensors");
    fake_checkpoint(&ckpt, "ssl", 0.5);
    let run = |registry_flag: Option<&Path>, args: &[&str]| -> Run {
        let mut c = command("semiclass");
        c.env("SEMICLASS_REGISTRY", &by_env);
        if let Some(flag) = registry_flag {
            c.arg("--registry").arg(flag);
        }
        c.args(args).output().unwrap().into()
    };
    assert_eq!(run(None, &["mark", ckpt.to_str().unwrap(), "here"]).code, 0);
    assert!(by_env.is_file() && !by_flag.exists());
    assert!(run(None, &["marks"]).stdout.contains("@here"));
    assert!(!run(Some(&by_flag), &["marks"]).stdout.contains("@here"));
    assert!(by_flag.is_file());
}

#[test]
fn processes_marking_at_once_lose_no_move() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.sqlite");
    let checkpoints: Vec<PathBuf> = (0..2)
        .map(|i| tmp.path().join(format!("{i}.safetensors")))
        .collect();
    for (i, c) in checkpoints.iter().enumerate() {
        fake_checkpoint(c, "ssl", i as f64 / 2.0);
    }
    let spawned: Vec<std::process::Child> = (0..8)
        .map(|i| {
            command("semiclass")
                .args(["--registry", registry.to_str().unwrap(), "mark"])
                .arg(&checkpoints[i % 2])
                .args(["racing", "--note", &format!("writer {i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in spawned {
        assert!(child.wait().unwrap().success());
    }
    let history = with_registry(&registry, &["marks", "--history", "racing"]).stdout;
    let notes: std::collections::BTreeSet<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split("writer ").nth(1))
        .collect();
    assert_eq!(notes.len(), 8, "{history}");
}

#[test]
fn a_registry_that_cannot_be_opened_does_not_stop_a_training() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    // A registry "inside" a regular file can never be created.
    let blocker = runs.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let registry = blocker.join("registry.sqlite");
    let mut args = vec!["--registry".to_string(), registry.display().to_string()];
    args.extend(train_args(&data, runs.path()));
    args.extend(["-o", "large.epochs=1", "-o", "large.ssl.epochs=0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = semiclass(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.stderr.matches("warning: run registry").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        runs.path()
            .join("tiny/checkpoints/best.safetensors")
            .is_file()
    );
}

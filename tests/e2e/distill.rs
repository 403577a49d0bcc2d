//! `--mode small` and `--mode joint`, and the large model's self-training
//! round, end to end on the tiny two-class dataset.

use std::path::{Path, PathBuf};

use crate::common::{TinyDataset, semiclass};
use crate::train::{
    checkpoint_meta, checkpoint_tensors, kill_once_saved, train, two_class_dataset,
};

/// A finished tiny large run: its best checkpoint is the teacher.
fn teacher(data: &TinyDataset, runs: &Path) -> PathBuf {
    let run = train(data, runs, &["-o", "large.ssl.epochs=0"]);
    assert_eq!(run.code, 0, "{}", run.all());
    runs.join("tiny/checkpoints/best.safetensors")
}

fn small_args(data: &TinyDataset, runs: &Path, teacher: &Path, name: &str) -> Vec<String> {
    [
        "train",
        "--mode",
        "small",
        "--data",
        data.arg(),
        "--teacher",
        teacher.to_str().unwrap(),
        "-o",
        &format!("run.name={name}"),
        "-o",
        &format!("run.dir={}", runs.display()),
        "-o",
        "small.model=lcnet_050",
        "-o",
        "small.epochs=2",
        "-o",
        "small.batch_size=8",
        "-o",
        "small.log_interval=1",
        "-o",
        "small.distill.finetune_epochs=1",
        "-o",
        "data.workers=1",
        "-o",
        "run.device=cpu",
    ]
    .map(String::from)
    .to_vec()
}

fn small(
    data: &TinyDataset,
    runs: &Path,
    teacher: &Path,
    name: &str,
    extra: &[&str],
) -> crate::common::Run {
    let mut args = small_args(data, runs, teacher, name);
    args.extend(extra.iter().map(|s| s.to_string()));
    semiclass(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn offline_distillation_caches_teacher_predictions_and_reuses_them() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let teacher = teacher(&data, runs.path());
    let first = small(&data, runs.path(), &teacher, "s1", &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    // 16 labeled + 16 unlabeled images, batches of 8: 4 steps per epoch.
    assert!(
        first.stdout.contains("[distill] epoch 2 step 8/8"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("[finetune] epoch 1 step 2/2"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("small: test.txt top-1"),
        "{}",
        first.stdout
    );
    assert!(first.stderr.contains("(computed)"), "{}", first.stderr);
    let meta = checkpoint_meta(&runs.path().join("s1/checkpoints/best.safetensors"));
    assert_eq!(meta["role"], "small");
    assert_eq!(meta["model"], "lcnet_050");
    assert_eq!(meta["teacher"]["path"], teacher.to_str().unwrap());
    assert_eq!(meta["teacher"]["sha256"].as_str().unwrap().len(), 64);

    let second = small(&data, runs.path(), &teacher, "s2", &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(second.stderr.contains("(reused)"), "{}", second.stderr);
    // The same seed, the same cached targets: the same student.
    let best = |name: &str| {
        checkpoint_tensors(
            &runs
                .path()
                .join(format!("{name}/checkpoints/best.safetensors")),
        )
    };
    assert!(
        best("s1") == best("s2"),
        "reused cache trained a different student"
    );

    // Another temperature changes the predictions: computed again.
    let third = small(
        &data,
        runs.path(),
        &teacher,
        "s3",
        &["-o", "small.distill.t=2"],
    );
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(third.stderr.contains("(computed)"), "{}", third.stderr);
}

#[test]
fn online_distillation_runs_the_teacher_every_step() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let teacher = teacher(&data, runs.path());
    // The teacher by nickname, through a registry of this test's own.
    let registry = runs.path().join("registry.sqlite");
    let registry_arg = registry.to_str().unwrap();
    let mark = semiclass(&[
        "--registry",
        registry_arg,
        "mark",
        teacher.to_str().unwrap(),
        "tiny-teacher",
    ]);
    assert_eq!(mark.code, 0, "{}", mark.all());
    let mut args = vec!["--registry".to_string(), registry_arg.to_string()];
    args.extend(small_args(
        &data,
        runs.path(),
        Path::new("@tiny-teacher"),
        "on",
    ));
    args.extend(["-o", "small.distill.mode=online"].map(String::from));
    let run = semiclass(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("[distill] epoch 2 step 8/8"),
        "{}",
        run.stdout
    );
    assert!(!runs.path().join(".soft-labels").exists());
}

#[test]
fn a_small_run_without_a_teacher_or_with_the_wrong_classes_is_refused() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let mut args = small_args(&data, runs.path(), Path::new("x"), "none");
    args.drain(5..7); // no --teacher
    let run = semiclass(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("--mode small needs a teacher"),
        "{}",
        run.stderr
    );

    let teacher = teacher(&data, runs.path());
    data.write("label.txt", "0 dark\n1 light\n");
    let run = small(&data, runs.path(), &teacher, "wrong", &[]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("the teacher predicts 2 classes (dark, bright)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_distillation_killed_and_resumed_ends_exactly_like_an_uninterrupted_one() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let teacher = teacher(&data, runs.path());
    let whole = small(&data, runs.path(), &teacher, "whole", &[]);
    assert_eq!(whole.code, 0, "{}", whole.all());

    let latest = kill_once_saved(
        &small_args(&data, runs.path(), &teacher, "killed"),
        &runs.path().join("killed"),
        &["finetune", "distill"],
    );
    let resumed = semiclass(&[
        "train",
        "--mode",
        "small",
        "--resume",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    let best = |name: &str| {
        checkpoint_tensors(
            &runs
                .path()
                .join(format!("{name}/checkpoints/best.safetensors")),
        )
    };
    assert!(best("killed") == best("whole"), "resumed student differs");
}

#[test]
fn joint_trains_both_models_in_one_run_directory() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let mut args = crate::train::train_args(&data, runs.path());
    args[2] = "joint".into();
    args.extend(
        [
            "-o",
            "small.epochs=1",
            "-o",
            "small.batch_size=8",
            "-o",
            "small.distill.finetune_epochs=0",
        ]
        .map(String::from),
    );
    let run = semiclass(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("large: test.txt top-1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("small: test.txt top-1"),
        "{}",
        run.stdout
    );
    let dir = runs.path().join("tiny");
    assert!(dir.join("config.yaml").is_file());
    for model in ["large", "small"] {
        assert!(
            dir.join(model)
                .join("checkpoints/best.safetensors")
                .is_file(),
            "{model}"
        );
        assert!(dir.join(model).join("metrics.csv").is_file(), "{model}");
        assert!(dir.join(model).join("summary.json").is_file(), "{model}");
    }
    let meta = checkpoint_meta(&dir.join("small/checkpoints/best.safetensors"));
    assert_eq!(
        meta["teacher"]["path"],
        dir.join("large/checkpoints/best.safetensors")
            .to_str()
            .unwrap()
    );
}

#[test]
fn self_training_labels_confident_unlabeled_images_and_competes_for_best() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let run = train(
        &data,
        runs.path(),
        &[
            "-o",
            "large.selftrain.epochs=1",
            "-o",
            "large.selftrain.p_cutoff=0.0",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(
            "selftrain: 16 of 16 unlabeled images at confidence >= 0 join 16 labeled ones"
        ),
        "{}",
        run.stderr
    );
    // 32 images in batches of 8.
    assert!(
        run.stdout.contains("[selftrain] epoch 1 step 4/4"),
        "{}",
        run.stdout
    );
    let dir = runs.path().join("tiny");
    assert!(dir.join("checkpoints/selftrain-best.safetensors").is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["supervised", "ssl", "selftrain"]);
    // The result is the stage with the best val accuracy.
    let best_val = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["val_top1"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(summary["val_top1"].as_f64().unwrap(), best_val);
}

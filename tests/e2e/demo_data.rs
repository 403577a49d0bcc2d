//! `semiclass demo-data fashion-mnist` on a small IDX source made here.

use std::path::Path;

use crate::common::{semiclass, write_idx_split};

/// IDX files with `n` images in the Fashion-MNIST layout, labels cycling 0..9.
fn write_split(dir: &Path, prefix: &str, n: u32) {
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_idx_split(dir, prefix, &pixels, &labels);
}

fn build(source: &Path, out: &Path, seed: &str) -> crate::common::Run {
    semiclass(&[
        "demo-data",
        "fashion-mnist",
        out.to_str().unwrap(),
        "--source",
        source.to_str().unwrap(),
        "--val-count",
        "50",
        "--labeled-frac",
        "0.2",
        "--seed",
        seed,
    ])
}

#[test]
fn builds_a_dataset_that_passes_the_check_and_is_never_overwritten() {
    let source = tempfile::tempdir().unwrap();
    write_split(source.path(), "train", 300);
    write_split(source.path(), "t10k", 40);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("fmnist");

    let run = build(source.path(), &out, "3");
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("train 50 labeled, train_unlabeled 200, val 50, test 40"),
        "{}",
        run.stdout
    );
    let label = std::fs::read_to_string(out.join("label.txt")).unwrap();
    assert!(label.starts_with("0 T-shirt/top\n1 Trouser\n"), "{label}");
    let val = std::fs::read_to_string(out.join("val.txt")).unwrap();
    for class in 0..10 {
        assert_eq!(
            val.lines()
                .filter(|l| l.ends_with(&format!(" {class}")))
                .count(),
            5
        );
    }

    let check = semiclass(&["check", out.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(check.stdout.contains("test 40"), "{}", check.stdout);

    let again = build(source.path(), &out, "3");
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.starts_with("already built"),
        "{}",
        again.stdout
    );

    let train_before = std::fs::read(out.join("train.txt")).unwrap();
    let other = build(source.path(), &out, "4");
    assert_eq!(other.code, 2, "{}", other.all());
    assert!(
        other
            .stderr
            .contains("exists and is not a dataset built by this command"),
        "{}",
        other.stderr
    );
    assert_eq!(std::fs::read(out.join("train.txt")).unwrap(), train_before);
}

#[test]
fn a_missing_source_says_what_to_install() {
    let work = tempfile::tempdir().unwrap();
    let run = build(&work.path().join("nothing"), &work.path().join("out"), "0");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("apt-get install dataset-fashion-mnist"),
        "{}",
        run.stderr
    );
    assert!(!work.path().join("out").exists());
}

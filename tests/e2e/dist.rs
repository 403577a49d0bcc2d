//! Data-parallel `semiclass train --nproc 2`: the same weights as one
//! process, nothing but rank 0's output (log and notices), a killed rank
//! named.
//!
//! The model is ViT-Tiny: LayerNorm normalises each sample on its own, so a
//! rank's half of a batch gives exactly the per-sample results the whole
//! batch gives in one process (BatchNorm's per-rank statistics would not),
//! and the runs may differ only by the order of float sums.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{TinyDataset, command, semiclass};
use crate::train::{train_args, two_class_dataset};

/// Largest weight difference allowed between the 1- and 2-rank runs: float
/// sums in another order (two half-batch means averaged, the all-reduce)
/// over these few steps stay near 1e-7 (measured: 6e-8 to 1.2e-7); a wrong shard or
/// a missing gradient average moves weights by 1e-3 and more.
const TOLERANCE: f32 = 1e-5;

fn vit_args(data: &TinyDataset, runs: &Path, name: &str) -> Vec<String> {
    let mut args = train_args(data, runs);
    for o in [
        format!("run.name={name}"),
        "large.model=vit_tiny_patch16_224".into(),
        "large.input_size=32".into(),
        "run.threads=1".into(),
    ] {
        args.extend(["-o".to_string(), o]);
    }
    args
}

pub(crate) fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
        .map(|(name, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, data)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

#[test]
fn two_ranks_train_the_weights_of_one() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let args = |name| vit_args(&data, runs.path(), name);
    let one = semiclass(&args("one").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(one.code, 0, "{}", one.all());
    let mut two_args = args("two");
    two_args.extend(["--nproc".into(), "2".into()]);
    let two = semiclass(&two_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(two.code, 0, "{}", two.all());
    assert!(
        two.stdout.contains("data-parallel: 2 ranks"),
        "{}",
        two.stdout
    );
    // Rank 1 prints nothing: each line of rank 0 appears once.
    assert_eq!(two.stdout.matches("run: ").count(), 1, "{}", two.stdout);
    let names: Vec<String> = std::fs::read_dir(runs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only rank 0's run folder: {names:?}");
    for stage in ["supervised", "ssl"] {
        assert_same_weights(runs.path(), stage, "one", "two");
    }
    // Across world sizes: each run's supervised state resumed on the other
    // world size trains its ssl stage again, to the same weights.
    let one_ssl = runs.path().join("one-ssl.safetensors");
    std::fs::copy(
        runs.path().join("one/checkpoints/ssl-last.safetensors"),
        &one_ssl,
    )
    .unwrap();
    for (run, nproc) in [("two", "1"), ("one", "2")] {
        let state = runs
            .path()
            .join(run)
            .join("checkpoints/supervised-last.state.safetensors");
        let resumed = semiclass(&[
            "train",
            "--mode",
            "large",
            "--resume",
            state.to_str().unwrap(),
            "--nproc",
            nproc,
        ]);
        assert_eq!(resumed.code, 0, "{}", resumed.all());
        let ssl = runs
            .path()
            .join(run)
            .join("checkpoints/ssl-last.safetensors");
        let diff = max_difference(&one_ssl, &ssl);
        println!("ssl resumed from {run}'s state on {nproc} rank(s): {diff:e}");
        assert!(
            diff <= TOLERANCE,
            "resumed {run} on {nproc}: {diff} > {TOLERANCE}"
        );
    }
}

fn assert_same_weights(runs: &Path, stage: &str, a: &str, b: &str) {
    let file = format!("checkpoints/{stage}-last.safetensors");
    let diff = max_difference(&runs.join(a).join(&file), &runs.join(b).join(&file));
    println!("{stage}: largest weight difference {a} vs {b}: {diff:e}");
    assert!(diff <= TOLERANCE, "{stage}: {diff} > {TOLERANCE}");
}

#[test]
fn a_killed_rank_stops_the_run_with_its_rank_named() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let mut args = vit_args(&data, runs.path(), "killed");
    args.extend(
        [
            "-o",
            "large.epochs=400",
            "-o",
            "run.dist_timeout=20",
            "--nproc",
            "2",
        ]
        .map(String::from),
    );
    let mut launcher = command("semiclass")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(launcher.stdout.take().unwrap()).lines();
    // Training has started on both ranks once a step is logged.
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(" step "));
    assert!(started, "no training step logged");
    let rank1 = children(launcher.id())[1];
    let scratch = std::env::temp_dir().join(format!("semiclass-rank1-{rank1}"));
    assert!(scratch.is_dir(), "rank 1 trains in {}", scratch.display());
    // SAFETY: killing a process this test started (the launcher's second child).
    unsafe { libc::kill(rank1 as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let out = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(
        killed.elapsed() < Duration::from_secs(40),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rank 1 of the --nproc run was killed by signal 9"),
        "{stderr}"
    );
    // Rank 0's own error names the rank too (from the ranks' heartbeats).
    assert!(stderr.contains("rank 1 stopped responding"), "{stderr}");
    // Rank 1's last words are its errors only: its notices were rank 0's,
    // which the user saw once.
    assert_eq!(stderr.matches("large: baseline: ").count(), 1, "{stderr}");
    assert!(!stderr.contains("its last words"), "{stderr}");
    // The killed rank could not remove its scratch folder; the launcher did.
    assert!(!scratch.exists(), "{} left behind", scratch.display());
}

/// The processes `pid` started, in the order started.
fn children(pid: u32) -> Vec<u32> {
    let mut kids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let path = t.unwrap().path().join("children");
            std::fs::read_to_string(path).unwrap_or_default() + " "
        })
        .collect::<String>()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    kids.sort();
    kids
}

/// Two "nodes" of one process each on 127.0.0.1, started the way torchrun
/// starts them on two machines (`--nnodes 2 --nproc-per-node 1`): each
/// LOCAL_RANK 0, distinct GROUP_RANK (the node rank) and RANK, no --nproc.
#[test]
fn two_nodes_on_loopback_train_from_torchruns_environment() {
    let data = two_class_dataset();
    let runs = tempfile::tempdir().unwrap();
    let args = vit_args(&data, runs.path(), "nodes");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nodes: Vec<_> = (0..2)
        .map(|node| {
            command("semiclass")
                .args(&args)
                .envs([
                    ("RANK", node.to_string()),
                    ("GROUP_RANK", node.to_string()),
                    ("LOCAL_RANK", "0".into()),
                    ("WORLD_SIZE", "2".into()),
                    ("LOCAL_WORLD_SIZE", "1".into()),
                    ("MASTER_ADDR", "127.0.0.1".into()),
                    ("MASTER_PORT", port.to_string()),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = nodes
        .into_iter()
        .map(|n| n.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let node0 = String::from_utf8_lossy(&outs[0].stdout);
    assert!(node0.contains("data-parallel: 2 ranks"), "{node0}");
    assert!(node0.contains("[ssl] epoch 1 step 2/2"), "{node0}");
    // Rank 1 shows nothing: no log, and none of the notices (mirrors,
    // baseline) that rank 0 gives the user on stderr.
    assert_eq!(
        String::from_utf8_lossy(&outs[1].stdout),
        "",
        "rank 1 prints nothing"
    );
    let node0 = String::from_utf8_lossy(&outs[0].stderr);
    for notice in ["large: mirror images: ", "large: baseline: "] {
        assert!(node0.contains(notice), "{node0}");
    }
    assert_eq!(
        String::from_utf8_lossy(&outs[1].stderr),
        "",
        "rank 1 says nothing on stderr"
    );
    assert!(
        runs.path()
            .join("nodes/checkpoints/ssl-last.safetensors")
            .is_file()
    );
    assert_eq!(std::fs::read_dir(runs.path()).unwrap().count(), 1);
}

/// Under torchrun or srun the ranks' errors reach one terminal: each says
/// which rank it is.
#[test]
fn a_rank_started_by_a_launcher_names_itself_in_its_error() {
    let out = command("semiclass")
        .args(["train", "--mode", "large", "--data", "/nonexistent/dataset"])
        .envs([
            ("RANK", "1"),
            ("LOCAL_RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("semiclass: rank 1 of 2: error: /nonexistent/dataset"),
        "{stderr}"
    );
}

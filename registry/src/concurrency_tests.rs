//! Several processes writing one registry: nothing lost, nothing half
//! written. The writers are this test executable run again as children
//! (`child_writer`, told what to do through an environment variable), so
//! each is a real process with its own connection and locks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{EvalSource, NewCheckpoint, NewEval, NewRun, Registry, RunStatus};

/// `DB|JOB|ARG`: what a child writer does.
const CHILD_ENV: &str = "SEMICLASS_REGISTRY_TEST_CHILD";
const PROCESSES: usize = 4;
const ROUNDS: usize = 25;

/// A registry in a fresh temporary folder (kept alive by the `TempDir`).
pub(crate) fn temp_registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(&dir.path().join("registry.sqlite")).unwrap();
    (dir, reg)
}

fn spawn_child(db: &Path, job: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "concurrency_tests::child_writer", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{job}|{arg}", db.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Run only as a child of the tests below; does nothing on its own.
#[test]
#[ignore = "a writer process started by the concurrency tests"]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (db, job, arg) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut reg = Registry::open(Path::new(db)).unwrap();
    match job {
        "work" => work(&mut reg, arg),
        "hang" => hang_in_transaction(&mut reg, Path::new(arg)),
        other => panic!("unknown job {other}"),
    }
}

/// What a training plus an evaluation and a mark write, `ROUNDS` times.
fn work(reg: &mut Registry, who: &str) {
    let metrics = BTreeMap::from([("val_top1".to_string(), 0.5)]);
    for round in 0..ROUNDS {
        let dir = PathBuf::from(format!("/runs/{who}-{round}"));
        let run = NewRun {
            run_dir: &dir,
            mode: "large",
            config: "{}",
        };
        let run_id = reg.begin_run(&run).unwrap();
        let mut last = 0;
        for stage in ["supervised", "ssl", "best"] {
            let path = dir.join(format!("checkpoints/{stage}.safetensors"));
            let sha = format!("{who}-{round}-{stage}");
            last = reg
                .record_checkpoint(&new_checkpoint(&path, &sha, run_id, &metrics))
                .unwrap();
        }
        reg.end_run(run_id, RunStatus::Finished, None).unwrap();
        let source = EvalSource::Split("test".into());
        let eval = NewEval {
            checkpoint_id: last,
            dataset: Path::new("/data"),
            source: &source,
            out_dir: Path::new("/out"),
        };
        let eval_id = reg.begin_eval(&eval).unwrap();
        reg.finish_eval(eval_id, &serde_json::json!({"top1": 0.5}))
            .unwrap();
        reg.mark("shared", last, Some(&format!("{who}-{round}")))
            .unwrap();
    }
}

fn new_checkpoint<'a>(
    path: &'a Path,
    sha: &'a str,
    run_id: i64,
    metrics: &'a BTreeMap<String, f64>,
) -> NewCheckpoint<'a> {
    NewCheckpoint {
        path,
        sha256: sha,
        run_id: Some(run_id),
        model: "resnet18",
        role: "large",
        stage: "supervised",
        epoch: 1,
        step: 1,
        metrics,
    }
}

/// Writes a run and a checkpoint in one transaction, says so through
/// `signal`, then waits inside the transaction to be killed.
fn hang_in_transaction(reg: &mut Registry, signal: &Path) {
    reg.write(|tx| {
        tx.execute(
            "INSERT INTO runs (name, run_dir, mode, config, status, started)
             VALUES ('doomed', '/runs/doomed', 'large', '{}', 'running', 0)",
            [],
        )?;
        tx.execute(
            "INSERT INTO checkpoints (path, sha256, run_id, model, role, stage, epoch, step, metrics, recorded)
             VALUES ('/runs/doomed/a', 'x', last_insert_rowid(), 'm', 'large', 's', 0, 0, '{}', 0)",
            [],
        )?;
        std::fs::write(signal, b"in transaction").unwrap();
        std::thread::sleep(Duration::from_secs(120));
        Ok(())
    })
    .unwrap();
}

fn count(reg: &Registry, table: &str) -> i64 {
    reg.reader()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn processes_writing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.sqlite");
    let children: Vec<Child> = (0..PROCESSES)
        .map(|i| spawn_child(&db, "work", &format!("p{i}")))
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer failed");
    }
    let reg = Registry::open(&db).unwrap();
    let n = (PROCESSES * ROUNDS) as i64;
    assert_eq!(count(&reg, "runs"), n);
    assert_eq!(count(&reg, "checkpoints"), 3 * n);
    assert_eq!(count(&reg, "eval_tasks WHERE status = 'finished'"), n);
    assert_eq!(count(&reg, "runs WHERE status = 'finished'"), n);
    let history = reg.mark_history(Some("shared")).unwrap();
    assert_eq!(history.len() as i64, n);
    // Every move names the checkpoint the previous event left the mark on.
    for pair in history.windows(2) {
        assert_eq!(pair[1].previous_id, pair[0].checkpoint_id);
    }
    let current = reg.marked("shared").unwrap().unwrap();
    assert_eq!(
        Some(current.checkpoint.id),
        history.last().unwrap().checkpoint_id
    );
}

#[test]
fn a_writer_killed_mid_transaction_leaves_no_partial_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.sqlite");
    let signal = dir.path().join("in-transaction");
    Registry::open(&db).unwrap();
    let mut child = spawn_child(&db, "hang", signal.to_str().unwrap());
    let started = Instant::now();
    while !signal.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writer never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no rollback, no unlock by the process
    child.wait().unwrap();
    let mut reg = Registry::open(&db).unwrap();
    assert_eq!(count(&reg, "runs"), 0);
    assert_eq!(count(&reg, "checkpoints"), 0);
    let integrity: String = reg
        .reader()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // The dead writer's lock is gone: the next write goes through at once.
    let before = Instant::now();
    let run = NewRun {
        run_dir: Path::new("/runs/next"),
        mode: "large",
        config: "{}",
    };
    reg.begin_run(&run).unwrap();
    assert!(before.elapsed() < Duration::from_secs(5));
    assert_eq!(count(&reg, "runs"), 1);
}

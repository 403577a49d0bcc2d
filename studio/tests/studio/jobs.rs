//! The job queue with real `semiclass train` child processes on a tiny
//! dataset (the binary must be built: `cargo build -p semiclass-trainer`).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use semiclass_registry::{JobRow, JobStatus};

use crate::common::{StudioProcess, TestStudio, add_dataset, semiclass_binary, two_class_dataset};

/// Settings that train in seconds on a CPU (tests/e2e's).
pub const TINY: &[(&str, &str)] = &[
    ("mode", "large"),
    ("large.epochs", "2"),
    ("large.ssl.epochs", "1"),
    ("large.batch_size", "8"),
    ("large.ssl.mu", "1"),
    ("large.log_interval", "1"),
    ("large.ssl.p_cutoff", "0.5"),
    ("data.workers", "1"),
    ("run.device", "cpu"),
];

/// 30 supervised steps evaluated only at the end: long enough to stop
/// in the middle.
const LONGER: &[(&str, &str)] = &[
    ("large.epochs", "15"),
    ("large.ssl.epochs", "0"),
    ("large.eval_interval", "1000"),
];

/// Queues a tiny training on a new dataset (kept alive by the returned folder).
pub async fn queue(t: &TestStudio, extra: &[(&str, &str)]) -> (i64, tempfile::TempDir) {
    assert!(
        semiclass_binary().is_file(),
        "{} is not built; run `cargo build -p semiclass-trainer` first",
        semiclass_binary().display()
    );
    let data = two_class_dataset();
    let id = add_dataset(t, data.path()).await.to_string();
    let mut form: Vec<(&str, &str)> = TINY.to_vec();
    form.push(("dataset", &id));
    // Later values of a key win, as `-o` overrides do.
    form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    form.extend_from_slice(extra);
    let answer = t.post_form("/train", &form).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let target = answer.headers["hx-redirect"].to_str().unwrap();
    (
        target.strip_prefix("/jobs/").unwrap().parse().unwrap(),
        data,
    )
}

fn job(t: &TestStudio, id: i64) -> JobRow {
    t.registry().job(id).unwrap().unwrap()
}

/// Looks at the queue until `done` holds for the job (or fails after 5 minutes).
pub fn wait_for(t: &TestStudio, id: i64, what: &str, done: impl Fn(&JobRow) -> bool) -> JobRow {
    let started = Instant::now();
    loop {
        t.studio.jobs.tick().unwrap();
        let row = job(t, id);
        if done(&row) {
            return row;
        }
        let log = std::fs::read_to_string(&row.log_path).unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no {what} after 5 minutes: {row:?}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn ended(row: &JobRow) -> bool {
    !matches!(row.status, JobStatus::Queued | JobStatus::Running)
}

fn log_has(text: &'static str) -> impl Fn(&JobRow) -> bool {
    move |row| std::fs::read_to_string(&row.log_path).is_ok_and(|l| l.contains(text))
}

pub fn log(row: &JobRow) -> String {
    std::fs::read_to_string(&row.log_path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_training_runs_as_a_child_process_and_finishes() {
    let t = TestStudio::logged_in().await;
    let (id, _data) = queue(&t, &[]).await;
    let row = wait_for(&t, id, "end", ended);
    assert_eq!(row.status, JobStatus::Finished, "{}", log(&row));
    assert!(log(&row).contains("large: best"), "{}", log(&row));
    assert!(row.run_dir.join("checkpoints/best.safetensors").is_file());
    // The child recorded its run in the studio's registry.
    let runs = t.registry().runs().unwrap();
    assert!(runs.iter().any(|r| r.run_dir == row.run_dir), "{runs:?}");
    let status = t.get(&format!("/jobs/{id}/status")).await;
    assert!(status.body.contains("finished"), "{}", status.body);
    assert!(
        !status.body.contains("every 3s"),
        "a finished job is not polled"
    );
    let page = t.get(&format!("/jobs/{id}")).await;
    assert!(page.body.contains("large: best"), "{}", page.body);
    assert!(!page.body.contains("sse-connect"), "nor streamed");
    // The stream of a job that ended says so at once.
    let events = t.get(&format!("/jobs/{id}/events?from=0")).await;
    assert!(events.body.contains("event: line"), "{}", events.body);
    assert!(events.body.contains("event: end"), "{}", events.body);
    let again = t.post_form(&format!("/jobs/{id}/cancel"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    crate::run_page::a_finished_run_shows_its_stages_summary_curves_and_checkpoints(&t, &row).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_training_stops_with_its_state_and_resumes_to_the_end() {
    let t = TestStudio::logged_in().await;
    let (id, _data) = queue(&t, LONGER).await;
    wait_for(&t, id, "step 3", log_has(" step 3/30 "));
    let answer = t.post_form(&format!("/jobs/{id}/cancel"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let row = wait_for(&t, id, "end", ended);
    assert_eq!(row.status, JobStatus::Cancelled, "{}", log(&row));
    assert!(
        row.run_dir
            .join("checkpoints/supervised-last.state.safetensors")
            .is_file()
    );
    let resumed = t.post_form(&format!("/jobs/{id}/resume"), &[]).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    let row = wait_for(&t, id, "end", ended);
    assert_eq!(row.status, JobStatus::Finished, "{}", log(&row));
    // The second start continued the first: one run, which the log shows ending.
    assert!(log(&row).contains("large: best"), "{}", log(&row));
    assert_eq!(t.registry().runs().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_left_by_a_killed_studio_shows_as_interrupted_and_resumes() {
    let t = TestStudio::logged_in().await;
    let (id, _data) = queue(&t, LONGER).await;
    // A real studio on the same registry runs the queue (this test's
    // studio never looks at it until the end)...
    let registry = t.dir.path().join("registry.sqlite");
    let studio = StudioProcess::start(&registry);
    let row = poll(&t, id, "step 3", log_has(" step 3/30 "));
    let pid = row.pid.expect("the studio recorded its job's pid");
    // ...and is killed: its job gets SIGTERM from the kernel
    // (PR_SET_PDEATHSIG) and saves its state with nobody watching.
    studio.kill();
    let started = Instant::now();
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            log(&row)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        job(&t, id).status,
        JobStatus::Running,
        "nobody has looked yet"
    );
    let studio = StudioProcess::start(&registry);
    let row = poll(&t, id, "recovery", ended);
    // The new studio found it.
    assert_eq!(row.status, JobStatus::Interrupted, "{}", log(&row));
    assert!(
        row.message
            .unwrap()
            .contains("the studio stopped while it ran")
    );
    let page = t.get(&format!("/jobs/{id}")).await;
    assert!(
        page.body.contains("interrupted") && page.body.contains("Resume"),
        "{}",
        page.body
    );
    // Resumed here, run there.
    let resumed = t.post_form(&format!("/jobs/{id}/resume"), &[]).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    let row = poll(&t, id, "end", ended);
    assert_eq!(row.status, JobStatus::Finished, "{row:?}\n{}", log(&row));
    // The second start continued the first: one run, which the log shows ending.
    assert!(log(&row).contains("large: best"), "{}", log(&row));
    assert_eq!(t.registry().runs().unwrap().len(), 1);
    drop(studio);
}

/// Reads the registry until `done` holds for the job, without running the
/// queue (another studio process runs it); fails after 5 minutes.
fn poll(t: &TestStudio, id: i64, what: &str, done: impl Fn(&JobRow) -> bool) -> JobRow {
    let started = Instant::now();
    loop {
        let row = job(t, id);
        if done(&row) {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no {what} after 5 minutes: {row:?}\n{}",
            std::fs::read_to_string(&row.log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

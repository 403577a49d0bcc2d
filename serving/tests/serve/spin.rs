//! ONNX Runtime's pool threads must not burn a core between requests: a
//! session on several threads (a model's wide session) spins its pool
//! threads for tens of milliseconds after each run unless told not to, and
//! a server answering requests one after another then loses a core to
//! spinning (`serving/src/engine.rs`).

use std::fs;
use std::time::Duration;

use axum::http::StatusCode;
use semiclass_serve::app::app;

use crate::common::*;

/// CPU of this process's threads named `name`, in clock ticks (10 ms on
/// Linux).
fn ticks_of(name: &str) -> u64 {
    let tasks = fs::read_dir("/proc/self/task").unwrap();
    let stats = tasks.filter_map(|task| {
        let path = task.ok()?.path();
        (fs::read_to_string(path.join("comm")).ok()? == name)
            .then(|| fs::read_to_string(path.join("stat")).ok())?
    });
    stats
        .filter_map(|stat| {
            // utime and stime: the 12th and 13th fields after the name.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn requests_one_at_a_time_leave_no_inference_thread_spinning() {
    let fixture = Fixture::new();
    // The threads ONNX Runtime starts are named like the thread that
    // loads the sessions: this test's, unlike other tests' threads.
    let name = fs::read_to_string("/proc/thread-self/comm").unwrap();
    let app = app(fixture.state());
    let uri = format!("/v1/models/{}/predict", fixture.large_id());
    let request = || post(&fixture, &uri, "image/png", png(64, 48, 1));
    assert_eq!(send(&app, request()).await.0, StatusCode::OK);
    let start = ticks_of(&name);
    // Ten requests a twentieth of a second apart: each runs alone, on the
    // wide session (2 threads). Spinning after each run would cost most of
    // the half second; the runs themselves cost well under a millisecond.
    for _ in 0..10 {
        assert_eq!(send(&app, request()).await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spent_ms = (ticks_of(&name) - start) * 10;
    assert!(
        spent_ms <= 100,
        "this test's threads spent {spent_ms} ms of CPU over 10 requests 50 ms apart"
    );
}

//! The Runs pages: a run the registry recorded, shown from its folder
//! whoever started it, its files downloadable but nothing outside it.

use axum::http::StatusCode;
use semiclass_registry::JobRow;

use crate::common::TestStudio;

/// The run a finished tiny job recorded, as `/runs` shows it; called from
/// the run page's check on that job (one training for all).
pub async fn the_runs_page_shows_the_same_run(t: &TestStudio, job: &JobRow) {
    let run = t
        .registry()
        .runs()
        .unwrap()
        .into_iter()
        .find(|r| r.run_dir == job.run_dir)
        .expect("the job's training recorded its run");
    let list = t.get("/runs").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains(&format!("href=\"/runs/{}\"", run.id)),
        "{}",
        list.body
    );
    let folder = job.run_dir.file_name().unwrap().to_str().unwrap();
    assert!(
        list.body.contains(&format!(">{folder}</a>")),
        "{}",
        list.body
    );
    let id = run.id;
    let page = t.get(&format!("/runs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for part in [
        "data-stage=\"large/supervised\" data-done=\"true\"",
        "large model: summary",
        "id=\"curves-data\"",
        &format!("href=\"/runs/{id}/files/checkpoints/best.safetensors\""),
        "<span class=\"badge finished\">finished</span>",
    ] {
        assert!(
            page.body.contains(part),
            "{part} missing from\n{}",
            page.body
        );
    }
    let best = std::fs::read(job.run_dir.join("checkpoints/best.safetensors")).unwrap();
    let download = t
        .get(&format!("/runs/{id}/files/checkpoints/best.safetensors"))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body.len(), String::from_utf8_lossy(&best).len());
    for (path, status) in [
        (
            format!("/runs/{id}/files/..%2F..%2Fregistry.sqlite"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/runs/{id}/files/%2Fetc%2Fpasswd"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/runs/999".to_string(), StatusCode::NOT_FOUND),
        (
            "/runs/999/files/checkpoints/best.safetensors".to_string(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = t.get(&path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(!answer.body.contains("SQLite"), "{path}");
    }
}

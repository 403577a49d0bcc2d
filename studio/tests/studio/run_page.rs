//! A run's page on a real (tiny) training: the stage table, the summary,
//! the curves' rows, the event stream, checkpoint downloads that cannot
//! leave the run's folder, and the resolved YAML as a download.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use semiclass_registry::JobRow;

use crate::common::{TestStudio, add_dataset, form_body, two_class_dataset};
use crate::jobs::TINY;

/// What the page of a finished tiny `large` job shows; called from the
/// jobs test that trains one (one training for both).
pub async fn a_finished_run_shows_its_stages_summary_curves_and_checkpoints(
    t: &TestStudio,
    row: &JobRow,
) {
    let id = row.id;
    let page = t.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    for part in [
        "data-stage=\"large/supervised\" data-done=\"true\"",
        "data-stage=\"large/ssl\" data-done=\"true\"",
        "large model: summary",
        "id=\"curves-data\"",
        "\"columns\":[\"step\",\"sup_loss\",\"unsup_loss\",\"mask_ratio\",\"val_top1\",\"val_top5\"]",
        &format!("href=\"/jobs/{id}/files/checkpoints/best.safetensors\""),
        "/marks?checkpoint=",
        "/assets/uPlot-1.6.32.iife.min.js",
        &format!("href=\"/jobs/{id}/config.yaml\""),
    ] {
        assert!(body.contains(part), "{part} missing from\n{body}");
    }
    // Not streamed: the job has ended.
    assert!(!body.contains("sse-connect"), "{body}");
    // The stream from the start sends the rows, the stage table, the end.
    let events = t
        .get(&format!("/jobs/{id}/events?from=0&rows=0"))
        .await
        .body;
    for kind in [
        "event: line",
        "event: metrics",
        "event: progress",
        "event: end",
    ] {
        assert!(events.contains(kind), "{kind} missing from\n{events}");
    }
    assert!(events.contains("\"from\":0"), "{events}");
    // ...and none of the rows the page already has.
    let rows = semiclass_metrics::read(&row.run_dir.join("metrics.csv"))
        .unwrap()
        .rows
        .len();
    let rest = t
        .get(&format!("/jobs/{id}/events?from=0&rows={rows}"))
        .await
        .body;
    assert!(!rest.contains("event: metrics"), "{rest}");

    let best = row.run_dir.join("checkpoints/best.safetensors");
    let download = t
        .get(&format!("/jobs/{id}/files/checkpoints/best.safetensors"))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(
        download.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"best.safetensors\""
    );
    assert_eq!(
        download.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        std::fs::metadata(&best).unwrap().len().to_string()
    );
    crate::runs::the_runs_page_shows_the_same_run(t, row).await;
    let yaml = t.get(&format!("/jobs/{id}/config.yaml")).await;
    assert_eq!(yaml.status, StatusCode::OK);
    assert_eq!(yaml.body, row.config);
    assert!(
        yaml.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
}

#[tokio::test]
async fn downloads_never_leave_the_run_folder_and_unknown_runs_are_404() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    let dataset = add_dataset(&t, data.path()).await.to_string();
    // A queued job (never started here: no tick) and its run folder.
    let mut form: Vec<(&str, &str)> = TINY.to_vec();
    form.push(("dataset", &dataset));
    let answer = t.post_form("/train", &form).await;
    let target = answer.headers["hx-redirect"].to_str().unwrap();
    let id: i64 = target.strip_prefix("/jobs/").unwrap().parse().unwrap();
    let job = t.registry().job(id).unwrap().unwrap();
    std::fs::create_dir_all(job.run_dir.join("checkpoints")).unwrap();
    std::fs::write(job.run_dir.join("checkpoints/best.safetensors"), b"w").unwrap();
    std::os::unix::fs::symlink(
        t.dir.path().join("registry.sqlite"),
        job.run_dir.join("registry-link"),
    )
    .unwrap();
    let ok = t
        .get(&format!("/jobs/{id}/files/checkpoints/best.safetensors"))
        .await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "w"));
    for (path, status) in [
        (
            "..%2F..%2F..%2Fregistry.sqlite",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "checkpoints%2F..%2F..%2F..%2F..%2Fregistry.sqlite",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("%2Fetc%2Fpasswd", StatusCode::UNPROCESSABLE_ENTITY),
        ("registry-link", StatusCode::UNPROCESSABLE_ENTITY),
        ("checkpoints", StatusCode::UNPROCESSABLE_ENTITY),
        ("checkpoints/nothing.safetensors", StatusCode::NOT_FOUND),
    ] {
        let answer = t.get(&format!("/jobs/{id}/files/{path}")).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(!answer.body.contains("SQLite"), "{path}");
    }
    for path in [
        "/jobs/999/files/checkpoints/best.safetensors",
        "/jobs/999/config.yaml",
        "/jobs/999",
    ] {
        let answer = t.get(path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            answer.body.contains("no job 999"),
            "{path}: {}",
            answer.body
        );
    }
    // A job whose run has not started has a page that says so.
    let page = t.get(&format!("/jobs/{id}")).await.body;
    assert!(page.contains("No step logged yet"), "{page}");
}

#[tokio::test]
async fn the_training_forms_resolved_yaml_downloads_or_says_what_is_wrong() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    let dataset = add_dataset(&t, data.path()).await.to_string();
    let good = t
        .post_form(
            "/train/config.yaml",
            &[
                ("mode", "large"),
                ("dataset", &dataset),
                ("large.epochs", "2"),
            ],
        )
        .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert_eq!(
        good.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"semiclass-large.yaml\""
    );
    assert!(good.body.contains("epochs: 2"), "{}", good.body);
    assert!(
        good.body.contains(&data.path().display().to_string()),
        "{}",
        good.body
    );
    let bad = t
        .post_form(
            "/train/config.yaml",
            &[
                ("mode", "large"),
                ("dataset", &dataset),
                ("large.epoch", "2"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("did you mean 'large.epochs'?"),
        "{}",
        bad.body
    );
    let form = t.get("/train/new").await.body;
    assert!(form.contains("formaction=\"/train/config.yaml\""), "{form}");
    // Another site cannot read it through a logged-in browser either.
    let body = form_body(&[("mode", "large"), ("dataset", &dataset)]);
    let other = Request::post("/train/config.yaml")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let refused = t.send(other, Body::from(body)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.body.contains("epochs"), "{}", refused.body);
    assert!(
        t.registry().jobs().unwrap().is_empty(),
        "nothing was queued"
    );
}

//! The Marks page: mark, move, unmark, the history of each nickname, and
//! every refused request changing nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use semiclass_registry::{MarkAction, NewCheckpoint, NewRun, Registry, sha256_file};

use crate::common::{TestStudio, form_body};

/// A run in the studio's registry with two checkpoint files (the bytes
/// stand for weights: marking reads only the hash).
fn recorded_run(t: &TestStudio) -> (i64, i64, PathBuf) {
    let run_dir = t.dir.path().join("studio/runs/r1");
    let folder = run_dir.join("checkpoints");
    std::fs::create_dir_all(&folder).unwrap();
    let mut registry = t.registry();
    let run = registry
        .begin_run(&NewRun {
            run_dir: &run_dir,
            mode: "large",
            config: "",
        })
        .unwrap();
    let mut record = |name: &str, top1: f64| {
        let path = folder.join(name);
        std::fs::write(&path, format!("weights of {name}")).unwrap();
        let metrics = BTreeMap::from([("val_top1".to_string(), top1)]);
        registry
            .record_checkpoint(&NewCheckpoint {
                path: &path,
                sha256: &sha256_file(&path).unwrap(),
                run_id: Some(run),
                model: "resnet18",
                role: "large",
                stage: "ssl",
                epoch: 1,
                step: 10,
                metrics: &metrics,
            })
            .unwrap()
    };
    let best = record("best.safetensors", 0.9);
    let last = record("ssl-last.safetensors", 0.8);
    (best, last, folder)
}

/// A form's pairs.
type Form = Vec<(&'static str, String)>;

fn history(registry: &Registry) -> Vec<(String, MarkAction)> {
    registry
        .mark_history(None)
        .unwrap()
        .into_iter()
        .map(|e| (e.nickname, e.action))
        .collect()
}

#[tokio::test]
async fn a_checkpoint_is_marked_moved_and_unmarked_with_its_history_shown() {
    let t = TestStudio::logged_in().await;
    let (best, last, _) = recorded_run(&t);
    let page = t.get(&format!("/marks?checkpoint={best}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("<option value=\"{best}\" selected>")),
        "the run page's checkpoint is chosen: {}",
        page.body
    );
    let id = last.to_string();
    let marked = t
        .post_form(
            "/marks",
            &[
                ("checkpoint", &id),
                ("nickname", "@demo-large"),
                ("note", "first"),
            ],
        )
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    assert_eq!(marked.headers["hx-redirect"], "/marks");
    let moved = t
        .post_form(
            "/marks",
            &[
                ("checkpoint", &best.to_string()),
                ("nickname", "demo-large"),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let registry = t.registry();
    assert_eq!(
        registry
            .marked("demo-large")
            .unwrap()
            .unwrap()
            .checkpoint
            .id,
        best
    );
    let page = t.get("/marks").await.body;
    assert!(
        page.contains("@demo-large") && page.contains("90.00%"),
        "{page}"
    );
    assert!(
        page.contains("<td>move</td>") && page.contains("first"),
        "{page}"
    );
    let gone = t
        .post_form("/marks/unmark", &[("nickname", "demo-large")])
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert!(t.registry().marks().unwrap().is_empty());
    let page = t.get("/marks").await.body;
    assert!(
        page.contains("No nickname yet") && page.contains("<td>unmark</td>"),
        "{page}"
    );
    assert_eq!(
        history(&t.registry()),
        [
            ("demo-large".to_string(), MarkAction::Mark),
            ("demo-large".to_string(), MarkAction::Move),
            ("demo-large".to_string(), MarkAction::Unmark),
        ]
    );
}

#[tokio::test]
async fn bad_marks_are_refused_with_the_reason_and_change_nothing() {
    let t = TestStudio::logged_in().await;
    let (best, last, folder) = recorded_run(&t);
    let ok = t
        .post_form(
            "/marks",
            &[("checkpoint", &best.to_string()), ("nickname", "keep")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let before = history(&t.registry());
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![
                ("checkpoint", best.to_string()),
                ("nickname", "my best".into()),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "which a nickname cannot hold",
        ),
        (
            vec![("checkpoint", best.to_string()), ("nickname", "-x".into())],
            StatusCode::UNPROCESSABLE_ENTITY,
            "must start with a letter or digit",
        ),
        (
            vec![("checkpoint", "99999".into()), ("nickname", "keep".into())],
            StatusCode::NOT_FOUND,
            "no checkpoint 99999 in the registry",
        ),
        (
            vec![
                ("checkpoint", "best.safetensors".into()),
                ("nickname", "keep".into()),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a checkpoint id",
        ),
    ];
    for (form, status, says) in &cases {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = t.post_form("/marks", &pairs).await;
        assert_eq!(answer.status, *status, "{form:?}: {}", answer.body);
        assert!(answer.body.contains(says), "{form:?}: {}", answer.body);
    }
    // A version of a file rewritten since is not what @keep would load.
    std::fs::write(folder.join("ssl-last.safetensors"), b"rewritten").unwrap();
    let stale = t
        .post_form(
            "/marks",
            &[("checkpoint", &last.to_string()), ("nickname", "keep")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(stale.body.contains("rewritten since"), "{}", stale.body);
    std::fs::remove_file(folder.join("ssl-last.safetensors")).unwrap();
    let gone = t
        .post_form(
            "/marks",
            &[("checkpoint", &last.to_string()), ("nickname", "keep")],
        )
        .await;
    assert_eq!(gone.status, StatusCode::CONFLICT, "{}", gone.body);
    let unknown = t
        .post_form("/marks/unmark", &[("nickname", "nobody")])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let bad = t.post_form("/marks/unmark", &[("nickname", "a/b")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    // From another site, even a good request is refused.
    let body = form_body(&[("checkpoint", &last.to_string()), ("nickname", "keep")]);
    let other = Request::post("/marks")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    assert_eq!(
        t.send(other, Body::from(body)).await.status,
        StatusCode::FORBIDDEN
    );
    let body = form_body(&[("nickname", "keep")]);
    let other = Request::post("/marks/unmark")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    assert_eq!(
        t.send(other, Body::from(body)).await.status,
        StatusCode::FORBIDDEN
    );
    let registry = t.registry();
    assert_eq!(history(&registry), before, "nothing changed");
    assert_eq!(
        registry.marked("keep").unwrap().unwrap().checkpoint.id,
        best
    );
    assert!(Path::new(&folder.join("best.safetensors")).is_file());
}

#[tokio::test]
async fn the_teacher_picker_offers_marks_and_large_checkpoints() {
    let t = TestStudio::logged_in().await;
    let (best, _, folder) = recorded_run(&t);
    let data = crate::common::two_class_dataset();
    crate::common::add_dataset(&t, data.path()).await;
    t.post_form(
        "/marks",
        &[("checkpoint", &best.to_string()), ("nickname", "teacher-a")],
    )
    .await;
    let form = t.get("/train/new").await.body;
    assert!(form.contains("value=\"@teacher-a\""), "{form}");
    let path = folder.join("best.safetensors");
    assert!(
        form.contains(&format!("value=\"{}\"", path.display())),
        "{form}"
    );
}

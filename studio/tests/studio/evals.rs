//! Evaluations: the form checks the checkpoint, the dataset and an uploaded
//! list as `semiclass eval` does and queues a `semiclass eval` job; the
//! history and the report page read what the CLI wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use semiclass_registry::{JobRow, JobStatus, NewCheckpoint};

use crate::common::{
    Answer, ORIGIN, TestStudio, add_dataset, semiclass_binary, snapshot, two_class_dataset,
};

const BOUNDARY: &str = "studio-eval-boundary";

/// A multipart form of text fields and, optionally, a list file.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .into_bytes(),
        );
    }
    if let Some((name, file_name, bytes)) = file {
        body.extend(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .into_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
    body
}

pub async fn post_multipart(t: &TestStudio, path: &str, body: Vec<u8>) -> Answer {
    let request = Request::post(path)
        .header(header::ORIGIN, ORIGIN)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("hx-request", "true");
    t.send(request, Body::from(body)).await
}

/// A checkpoint file of `classes` classes that the registry recorded: its
/// metadata as the trainer writes it, one token tensor (the form's checks
/// read only the metadata).
pub fn recorded_checkpoint(t: &TestStudio, classes: usize) -> PathBuf {
    use semiclass_manifest::checkpoint::CheckpointMeta;
    use semiclass_manifest::checkpoint_file::{META_KEY, serialize_sorted};
    let path = t.dir.path().join(format!("best-{classes}.safetensors"));
    let names = (0..classes).map(|c| format!("c{c}")).collect();
    let preprocess = semiclass_manifest::PreprocessSpec::for_input(32, [0.5; 3], [0.5; 3]);
    let meta = CheckpointMeta::untrained("resnet18", names, 32, preprocess, "supervised");
    let metadata = BTreeMap::from([(META_KEY.to_string(), serde_json::to_string(&meta).unwrap())]);
    let bytes = 0f32.to_le_bytes();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &bytes).unwrap();
    let tensors = vec![("fc.bias".to_string(), view)];
    std::fs::write(&path, serialize_sorted(&path, tensors, metadata).unwrap()).unwrap();
    let path = path.canonicalize().unwrap();
    let sha256 = semiclass_registry::sha256_file(&path).unwrap();
    t.registry()
        .record_checkpoint(&NewCheckpoint {
            path: &path,
            sha256: &sha256,
            run_id: None,
            model: "resnet18",
            role: "large",
            stage: "supervised",
            epoch: 1,
            step: 1,
            metrics: &BTreeMap::new(),
        })
        .unwrap();
    path
}

/// Refused with 422 naming `says`; no job, no list kept.
fn assert_refused(t: &TestStudio, answer: &Answer, says: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert!(answer.body.contains(says), "{says}: {}", answer.body);
    assert!(t.registry().jobs().unwrap().is_empty());
    let lists = t.dir.path().join("studio/lists");
    assert!(
        !lists.exists() || snapshot(&lists).is_empty(),
        "{:?}",
        snapshot(&lists)
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason_and_queue_nothing() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    let dataset = add_dataset(&t, data.path()).await.to_string();
    let checkpoint = recorded_checkpoint(&t, 2);
    let ckpt = checkpoint.to_str().unwrap();

    let unknown = t.dir.path().join("other.safetensors");
    std::fs::write(&unknown, b"x").unwrap();
    let form = [
        ("checkpoint", unknown.to_str().unwrap()),
        ("dataset", &dataset),
        ("source", "val"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_refused(&t, &answer, "not a checkpoint the registry recorded");
    let form = [
        ("checkpoint", "@nobody"),
        ("dataset", &dataset),
        ("source", "val"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_refused(&t, &answer, "nobody");

    // From another site: refused before anything is read.
    let form = [
        ("checkpoint", ckpt),
        ("dataset", &dataset),
        ("source", "val"),
    ];
    let other = Request::post("/evals")
        .header(header::ORIGIN, "http://evil.example")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    let answer = t.send(other, Body::from(multipart(&form, None))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(t.registry().jobs().unwrap().is_empty());

    let form = [
        ("checkpoint", ckpt),
        ("dataset", &dataset),
        ("source", "test"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_refused(&t, &answer, "no test.txt");
    let form = [("checkpoint", ckpt), ("dataset", "999"), ("source", "val")];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    let form = [
        ("checkpoint", ckpt),
        ("dataset", &dataset),
        ("source", "list"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_refused(&t, &answer, "choose a list file");

    // Weights of three classes on a dataset of two: the CLI's message.
    let other = recorded_checkpoint(&t, 3);
    let form = [
        ("checkpoint", other.to_str().unwrap()),
        ("dataset", &dataset),
        ("source", "val"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_refused(
        &t,
        &answer,
        "label.txt defines 2 classes but the checkpoint was trained on 3",
    );
    let list = b"images/v0.png 0\n";
    let file = Some(("list", "fine.txt", &list[..]));
    let form = [
        ("checkpoint", other.to_str().unwrap()),
        ("dataset", &dataset),
        ("source", "list"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, file)).await;
    assert_refused(&t, &answer, "trained on 3");

    // A list with a bad line: the CLI's check, its file:line, nothing kept.
    let list = b"images/v0.png 0\nimages/v1.png 7\n../outside.png 0\n";
    let file = Some(("list", "mine.txt", &list[..]));
    let form = [
        ("checkpoint", ckpt),
        ("dataset", &dataset),
        ("source", "list"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, file)).await;
    assert_refused(&t, &answer, "mine.txt:2");
    assert!(answer.body.contains("mine.txt:3"), "{}", answer.body);
    assert!(!answer.body.contains("pending-"), "{}", answer.body);
}

#[tokio::test]
async fn a_good_list_is_kept_and_queued_as_a_semiclass_eval_job() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    let dataset = add_dataset(&t, data.path()).await.to_string();
    let checkpoint = recorded_checkpoint(&t, 2);
    let list = b"images/v0.png 0\nimages/v1.png 1\n";
    let form = [
        ("checkpoint", checkpoint.to_str().unwrap()),
        ("dataset", &dataset),
        ("source", "list"),
    ];
    let answer = post_multipart(
        &t,
        "/evals",
        multipart(&form, Some(("list", "my list.txt", list))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let jobs = t.registry().jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.kind, "eval");
    let at = |flag: &str| {
        job.args
            .iter()
            .skip_while(|a| *a != flag)
            .nth(1)
            .unwrap()
            .clone()
    };
    assert_eq!(job.args[2], "eval");
    let kept = PathBuf::from(at("--list"));
    assert!(
        kept.starts_with(t.dir.path().join("studio/lists")),
        "{kept:?}"
    );
    assert!(
        kept.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("my_list-")
    );
    assert_eq!(std::fs::read(&kept).unwrap(), list);
    assert_eq!(PathBuf::from(at("--out")), job.run_dir);
    assert_eq!(answer.headers["hx-redirect"], format!("/jobs/{}", job.id));
    // Until it runs, the Evaluations page shows it queued.
    let page = t.get("/evals").await;
    assert!(
        page.body.contains(&format!("href=\"/jobs/{}\"", job.id)),
        "{}",
        page.body
    );
    assert!(page.body.contains("badge queued"), "{}", page.body);
}

#[tokio::test]
async fn report_files_are_served_by_their_names_only() {
    let t = TestStudio::logged_in().await;
    for path in [
        "/evals/1/files/..%2F..%2Fregistry.sqlite",
        "/evals/1/files/secrets.txt",
    ] {
        let answer = t.get(path).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("not a file of an evaluation report"),
            "{}",
            answer.body
        );
    }
    let answer = t.get("/evals/1/files/report.json").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.contains("no evaluation 1"), "{}", answer.body);
    let answer = t.get("/evals?sort=password").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.body.contains("cannot sort by"), "{}", answer.body);
}

/// Looks at the queue until the job ends (or fails after 2 minutes).
pub fn wait_until_ended(t: &TestStudio, id: i64) -> JobRow {
    let started = Instant::now();
    loop {
        t.studio.jobs.tick().unwrap();
        let row = t.registry().job(id).unwrap().unwrap();
        if !matches!(row.status, JobStatus::Queued | JobStatus::Running) {
            return row;
        }
        let log = std::fs::read_to_string(&row.log_path).unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{row:?}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny large-model training through the form; the checkpoint it saved.
pub async fn trained_checkpoint(t: &TestStudio, data: &Path) -> (String, PathBuf) {
    assert!(
        semiclass_binary().is_file(),
        "{} is not built; run `cargo build -p semiclass-trainer` first",
        semiclass_binary().display()
    );
    let dataset = add_dataset(t, data).await.to_string();
    let form = [
        ("mode", "large"),
        ("dataset", dataset.as_str()),
        ("large.epochs", "1"),
        ("large.ssl.epochs", "0"),
        ("large.batch_size", "8"),
        ("data.workers", "1"),
        ("run.device", "cpu"),
    ];
    let answer = t.post_form("/train", &form).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let id = t.registry().jobs().unwrap()[0].id;
    let row = wait_until_ended(t, id);
    let log = std::fs::read_to_string(&row.log_path).unwrap_or_default();
    assert_eq!(row.status, JobStatus::Finished, "{log}");
    (dataset, row.run_dir.join("checkpoints/best.safetensors"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evaluation_runs_and_its_report_page_shows_what_the_cli_wrote() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    std::fs::copy(data.path().join("val.txt"), data.path().join("test.txt")).unwrap();
    let (dataset, checkpoint) = trained_checkpoint(&t, data.path()).await;
    let form = [
        ("checkpoint", checkpoint.to_str().unwrap()),
        ("dataset", &dataset),
        ("source", "test"),
    ];
    let answer = post_multipart(&t, "/evals", multipart(&form, None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let id: i64 = answer.headers["hx-redirect"].to_str().unwrap()["/jobs/".len()..]
        .parse()
        .unwrap();
    let row = wait_until_ended(&t, id);
    let log = std::fs::read_to_string(&row.log_path).unwrap();
    assert_eq!(row.status, JobStatus::Finished, "{log}");

    let evals = t.registry().evals(None).unwrap();
    assert_eq!(evals.len(), 1);
    let eval = &evals[0];
    assert_eq!(eval.out_dir.as_deref(), Some(row.run_dir.as_path()));
    let report = semiclass_manifest::eval_report::EvalReport::read(&row.run_dir).unwrap();
    let page = t.get(&format!("/evals/{}", eval.id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The numbers are the CLI's, as it wrote them.
    let top1 = format!("{:.2}%", 100.0 * report.top1);
    assert!(page.body.contains(&top1), "{top1}: {}", page.body);
    assert!(page.body.contains("dark") && page.body.contains("bright"));
    assert!(page.body.contains("/files/confusion_counts.png"));
    let png = t
        .get(&format!("/evals/{}/files/confusion_counts.png", eval.id))
        .await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers[header::CONTENT_TYPE], "image/png");
    // The job's page links the report once it finished.
    let link = format!("href=\"/evals/{}\"", eval.id);
    let job_page = t.get(&format!("/jobs/{id}")).await;
    assert!(job_page.body.contains(&link), "{}", job_page.body);
    let history = t.get("/evals?sort=top1&dir=asc").await;
    assert!(history.body.contains(&top1), "{}", history.body);
    assert!(
        history
            .body
            .contains(&format!("href=\"/evals/{}\"", eval.id))
    );
}

#[tokio::test]
async fn the_history_sorts_by_the_column_asked_for() {
    use semiclass_registry::{EvalSource, NewEval};
    let t = TestStudio::logged_in().await;
    let checkpoint = recorded_checkpoint(&t, 2);
    let mut registry = t.registry();
    let id = registry.checkpoints().unwrap()[0].id;
    let source = EvalSource::Split("test".into());
    let mut ids = Vec::new();
    for top1 in [0.25, 0.75, 0.5] {
        let eval = registry
            .begin_eval(&NewEval {
                checkpoint_id: id,
                dataset: t.dir.path(),
                source: &source,
                out_dir: t.dir.path(),
            })
            .unwrap();
        registry
            .finish_eval(
                eval,
                &serde_json::json!({"top1": top1, "top5": 1.0, "count": 8}),
            )
            .unwrap();
        ids.push(eval);
    }
    let order = |body: &str| -> Vec<i64> {
        ids.iter()
            .map(|id| (body.find(&format!("href=\"/evals/{id}\"")).unwrap(), *id))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect()
    };
    let up = t.get("/evals?sort=top1&dir=asc").await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(order(&up.body), [ids[0], ids[2], ids[1]]);
    let down = t.get("/evals?sort=top1&dir=desc").await;
    assert_eq!(order(&down.body), [ids[1], ids[2], ids[0]]);
    assert!(down.body.contains("75.00%") && down.body.contains(&checkpoint.display().to_string()));
    // The heading of the sorted column turns the order around.
    assert!(
        down.body.contains("href=\"/evals?sort=top1&amp;dir=asc\""),
        "{}",
        down.body
    );
}

//! `GET /evals`: the history of every evaluation of every checkpoint, in
//! one table sorted by any column (`?sort=top1&dir=asc`), with the form
//! that starts one; `POST /evals` queues it.

use std::cmp::Ordering;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Multipart, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::{CheckpointRow, EvalRow, EvalSource, EvalStatus, JobStatus, Registry};
use serde::Deserialize;

use super::{EvalRequest, EvalSourceChoice};
use crate::datasets::pages::go_to;
use crate::error::StudioError;
use crate::jobs::runner::unique_stamp;
use crate::layout::{Section, page, when};
use crate::state::Studio;

/// The largest list file accepted (a list of a million images is ~50 MB).
pub const MAX_LIST_BYTES: usize = 64 << 20;

/// The history's columns: query name, heading, numeric.
const COLUMNS: &[(&str, &str, bool)] = &[
    ("id", "#", true),
    ("checkpoint", "Checkpoint", false),
    ("source", "On", false),
    ("status", "Status", false),
    ("top1", "Top-1", true),
    ("top5", "Top-5", true),
    ("f1", "Macro F1", true),
    ("count", "Images", true),
    ("started", "Started", false),
];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    sort: Option<String>,
    dir: Option<String>,
    checkpoint: Option<String>,
}

/// `GET /evals[?sort=COLUMN&dir=asc|desc][&checkpoint=ARG]`.
pub async fn list(
    State(studio): State<Arc<Studio>>,
    Query(query): Query<ListQuery>,
) -> Result<Markup, StudioError> {
    let registry = studio.registry()?;
    let mut evals = registry.evals(None)?;
    let sort = query.sort.as_deref().unwrap_or("started");
    if !COLUMNS.iter().any(|(name, ..)| *name == sort) {
        let known: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        return Err(StudioError::Invalid(format!(
            "cannot sort by '{sort}'; by one of {}",
            known.join(", ")
        )));
    }
    let ascending = query.dir.as_deref() == Some("asc");
    evals.sort_by(|a, b| {
        let order = compare(sort, a, b);
        if ascending { order } else { order.reverse() }
    });
    Ok(page(
        "Evaluations",
        Section::Evals,
        html! {
            h1 { "Evaluations" }
            (new_form(&registry, query.checkpoint.as_deref())?)
            (jobs_in_flight(&registry, "eval")?)
            h2 { "History" }
            @if evals.is_empty() {
                p.hint { "No evaluation yet." }
            } @else {
                (history(&evals, sort, ascending))
            }
        },
    ))
}

/// The queued and running jobs of `kind`, linked to their pages (their
/// results appear here once they end).
pub fn jobs_in_flight(registry: &Registry, kind: &str) -> Result<Markup, StudioError> {
    let jobs: Vec<_> = registry
        .jobs()?
        .into_iter()
        .filter(|j| j.kind == kind && matches!(j.status, JobStatus::Queued | JobStatus::Running))
        .collect();
    Ok(html! {
        @if !jobs.is_empty() {
            ul.card #in-flight {
                @for j in &jobs {
                    li { span class={ "badge " (j.status.as_str()) } { (j.status.as_str()) } " " a href={ "/jobs/" (j.id) } { (j.title) } }
                }
            }
        }
    })
}

fn history(evals: &[EvalRow], sort: &str, ascending: bool) -> Markup {
    let heading = |(name, text, numeric): &(&str, &str, bool)| {
        let next = if *name == sort && !ascending {
            "asc"
        } else {
            "desc"
        };
        let arrow = match (*name == sort, ascending) {
            (false, _) => "",
            (true, true) => " ▲",
            (true, false) => " ▼",
        };
        html! { th class=[numeric.then_some("num")] {
            a href={ "/evals?sort=" (name) "&dir=" (next) } { (text) (arrow) }
        } }
    };
    html! {
        table #history {
            thead { tr { @for column in COLUMNS { (heading(column)) } } }
            tbody { @for e in evals {
                tr {
                    td.num { a href={ "/evals/" (e.id) } { (e.id) } }
                    td { (checkpoint_text(&e.checkpoint)) br; span.hint { (e.checkpoint.path.display()) } }
                    td { (source_text(e)) }
                    td { (status_text(e.status)) }
                    td.num { (metric(e, "top1").map(percent).unwrap_or_default()) }
                    td.num { (metric(e, "top5").map(percent).unwrap_or_default()) }
                    td.num { (metric(e, "macro_f1").map(percent).unwrap_or_default()) }
                    td.num { (metric(e, "count").map(|c| c.to_string()).unwrap_or_default()) }
                    td { (when(e.started)) }
                }
            } }
        }
    }
}

fn compare(column: &str, a: &EvalRow, b: &EvalRow) -> Ordering {
    // An evaluation without the number (running, failed) sorts lowest.
    let by = |key: &str| {
        let number = |e: &EvalRow| metric(e, key).unwrap_or(f64::NEG_INFINITY);
        number(a).total_cmp(&number(b))
    };
    let order = match column {
        "checkpoint" => checkpoint_text(&a.checkpoint).cmp(&checkpoint_text(&b.checkpoint)),
        "source" => source_text(a).cmp(&source_text(b)),
        "status" => status_text(a.status).cmp(status_text(b.status)),
        "top1" => by("top1"),
        "top5" => by("top5"),
        "f1" => by("macro_f1"),
        "count" => by("count"),
        "id" => a.id.cmp(&b.id),
        _ => a.started.cmp(&b.started),
    };
    // Ties keep the latest first.
    order.then(a.id.cmp(&b.id))
}

fn metric(e: &EvalRow, key: &str) -> Option<f64> {
    e.metrics.as_ref()?.get(key)?.as_f64()
}

pub fn percent(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

fn checkpoint_text(c: &CheckpointRow) -> String {
    format!("{} {} epoch {}", c.model, c.stage, c.epoch)
}

pub fn source_text(e: &EvalRow) -> String {
    match &e.source {
        EvalSource::Split(split) => split.clone(),
        EvalSource::List(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

pub fn status_text(status: EvalStatus) -> &'static str {
    match status {
        EvalStatus::Running => "running",
        EvalStatus::Finished => "finished",
        EvalStatus::Failed => "failed",
    }
}

/// The newest version of each recorded checkpoint file, marks first: what
/// the pickers offer (value, text).
pub fn checkpoint_choices(registry: &Registry) -> Result<Vec<(String, String)>, StudioError> {
    let mut choices: Vec<(String, String)> = registry
        .marks()?
        .into_iter()
        .map(|m| {
            (
                format!("@{}", m.nickname),
                format!("@{} — {}", m.nickname, checkpoint_text(&m.checkpoint)),
            )
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for c in registry.checkpoints()? {
        if seen.insert(c.path.clone()) {
            let text = format!("{} — {}", checkpoint_text(&c), c.path.display());
            choices.push((c.path.display().to_string(), text));
        }
    }
    Ok(choices)
}

fn new_form(registry: &Registry, chosen: Option<&str>) -> Result<Markup, StudioError> {
    let checkpoints = checkpoint_choices(registry)?;
    let datasets: Vec<_> = registry
        .datasets()?
        .into_iter()
        .filter(|d| d.check_pass)
        .collect();
    if checkpoints.is_empty() || datasets.is_empty() {
        return Ok(
            html! { p.card { "To evaluate, first " a href="/train/new" { "train" } " on a " a href="/datasets" { "checked dataset" } "." } },
        );
    }
    Ok(html! {
        form.card.stack #new-eval hx-post="/evals" hx-encoding="multipart/form-data" hx-target="#eval-problems" {
            label { "checkpoint" select name="checkpoint" {
                @for (value, text) in &checkpoints { option value=(value) selected[chosen == Some(value.as_str())] { (text) } }
            } }
            label { "dataset" select name="dataset" {
                @for d in &datasets { option value=(d.id) { (d.name) " — " (d.path.display()) } }
            } }
            label { "on" select name="source" {
                option value="test" { "test.txt" }
                option value="val" { "val.txt" }
                option value="list" { "a list file (below)" }
            } }
            label { "list file" input type="file" name="list" accept=".txt,text/plain"; }
            div.row {
                button type="submit" { "Evaluate" }
                span.hint { "A list has \"path class_id\" lines, paths relative to the dataset folder; it is checked like " code { "semiclass eval --list" } " checks it." }
            }
            div #eval-problems {}
        }
    })
}

/// `POST /evals` (multipart): queue the evaluation; its job page follows.
pub async fn submit(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    form: Multipart,
) -> Result<Response, StudioError> {
    let lists = studio.data_dir.join("lists");
    let pending = lists.join(format!("pending-{}.txt", unique_stamp()));
    let request = receive(form, &pending).await;
    let studio2 = studio.clone();
    let queued = match request {
        Ok(request) => tokio::task::spawn_blocking(move || queue(&studio2, request))
            .await
            .map_err(|e| StudioError::Internal(format!("the request stopped: {e}")))?,
        Err(e) => Err(e),
    };
    // A list that was refused (or not used) is not kept.
    let _ = std::fs::remove_file(&pending);
    Ok(go_to(&headers, &format!("/jobs/{}", queued?)))
}

fn queue(studio: &Studio, request: EvalRequest) -> Result<i64, StudioError> {
    let job = request.job(studio)?;
    studio.jobs.enqueue(&job)
}

/// The form's fields; the list file, when one was sent, is written to
/// `pending` (not read into memory).
async fn receive(mut form: Multipart, pending: &Path) -> Result<EvalRequest, StudioError> {
    let invalid = |e: axum::extract::multipart::MultipartError| {
        StudioError::Invalid(format!("the form was cut or malformed: {e}"))
    };
    let (mut checkpoint, mut dataset, mut source) = (String::new(), None, String::new());
    let mut uploaded = None;
    while let Some(mut field) = form.next_field().await.map_err(invalid)? {
        match field.name().unwrap_or_default() {
            "checkpoint" => checkpoint = field.text().await.map_err(invalid)?,
            "dataset" => dataset = field.text().await.map_err(invalid)?.trim().parse().ok(),
            "source" => source = field.text().await.map_err(invalid)?,
            "list" => {
                let name = field.file_name().unwrap_or("list.txt").to_string();
                if name.is_empty() {
                    continue;
                }
                if let Some(dir) = pending.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
                }
                let mut file = std::fs::File::create_new(pending).map_err(|e| io(pending, e))?;
                let mut size = 0;
                while let Some(chunk) = field.chunk().await.map_err(invalid)? {
                    size += chunk.len();
                    file.write_all(&chunk).map_err(|e| io(pending, e))?;
                }
                if size > 0 {
                    uploaded = Some(
                        name.rsplit(['/', '\\'])
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
            _ => {}
        }
    }
    let source = match (source.as_str(), uploaded) {
        ("val", _) => EvalSourceChoice::Val,
        ("test", _) => EvalSourceChoice::Test,
        ("list", Some(uploaded)) => EvalSourceChoice::List {
            saved: pending.to_path_buf(),
            uploaded,
        },
        ("list", None) => {
            return Err(StudioError::Invalid(
                "choose a list file to evaluate on (or evaluate on val or test)".into(),
            ));
        }
        (other, _) => {
            return Err(StudioError::Invalid(format!(
                "cannot evaluate on '{other}'; on val, test or list"
            )));
        }
    };
    Ok(EvalRequest {
        checkpoint,
        dataset,
        source,
    })
}

fn io(path: &Path, e: std::io::Error) -> StudioError {
    StudioError::Internal(format!("{}: {e}", path.display()))
}

//! The dataset pages: the list with the add form, and a check report.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use semiclass_registry::DatasetRow;
use serde::Deserialize;

use super::{SavedCheck, SplitView, add_and_check, read_saved, report_dir};
use crate::error::StudioError;
use crate::layout::{Section, page, when};
use crate::state::Studio;

/// `GET /`: the datasets are where a user starts.
pub async fn index() -> Redirect {
    Redirect::to("/datasets")
}

/// `GET /datasets`.
pub async fn list(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let rows = studio.registry()?.datasets()?;
    Ok(page(
        "Datasets",
        Section::Datasets,
        html! {
            h1 { "Datasets" }
            section.card {
                h2 { "Add a dataset folder" }
                p.hint { "A folder on this machine in the ClsLMSSLDataset layout (label.txt, train.txt, train_unlabeled.txt, val.txt, images/). It is checked as " code { "semiclass check" } " checks it: every list line, every image. Nothing is written into it." }
                form.row hx-post="/datasets" hx-target="#add-result" hx-indicator="#checking" {
                    input type="text" name="path" placeholder="/data/flowers" required style="flex:1";
                    button type="submit" { "Add and check" }
                    span #checking .htmx-indicator.hint { "checking every image…" }
                }
                form.row hx-post="/datasets/upload" hx-encoding="multipart/form-data" hx-target="#add-result" hx-indicator="#uploading" {
                    span.hint { "or upload a .zip of the folder:" }
                    input type="file" name="archive" accept=".zip" required style="flex:1";
                    button type="submit" { "Upload and check" }
                    span #uploading .htmx-indicator.hint { "unpacking and checking…" }
                }
                div #add-result {}
            }
            @if rows.is_empty() {
                p.hint { "No dataset yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Folder" } th { "Check" } th.num { "Classes" } th { "Checked" } } }
                    tbody { @for row in &rows { (dataset_row(row)) } }
                }
            }
        },
    ))
}

fn dataset_row(row: &DatasetRow) -> Markup {
    let classes = read_saved(&row.report).map_or(0, |s| s.report.num_classes);
    html! {
        tr {
            td { a href={ "/datasets/" (row.id) } { (row.name) } }
            td.mono { (row.path.display()) }
            td { (pass_badge(row.check_pass)) }
            td.num { (classes) }
            td { (when(row.checked)) }
        }
    }
}

fn pass_badge(pass: bool) -> Markup {
    if pass {
        html! { span.badge.ok { "passed" } }
    } else {
        html! { span.badge.bad { "errors" } }
    }
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    path: String,
}

/// `POST /datasets`: check the folder and show its report.
pub async fn add(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Result<Response, StudioError> {
    let id = tokio::task::spawn_blocking(move || add_and_check(&studio, &form.path))
        .await
        .map_err(|e| StudioError::Internal(format!("the check stopped: {e}")))??;
    Ok(go_to(&headers, &format!("/datasets/{id}")))
}

/// `POST /datasets/{id}/check`: check again (after fixing the files).
pub async fn recheck(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, StudioError> {
    let row = find(&studio, id)?;
    let path = row.path.to_string_lossy().into_owned();
    let id = tokio::task::spawn_blocking(move || add_and_check(&studio, &path))
        .await
        .map_err(|e| StudioError::Internal(format!("the check stopped: {e}")))??;
    Ok(go_to(&headers, &format!("/datasets/{id}")))
}

/// A redirect a browser follows, for a form sent by htmx or not.
pub fn go_to(headers: &HeaderMap, url: &str) -> Response {
    if headers.contains_key("hx-request") {
        ([("hx-redirect", url)], "").into_response()
    } else {
        Redirect::to(url).into_response()
    }
}

pub fn find(studio: &Studio, id: i64) -> Result<DatasetRow, StudioError> {
    studio.registry()?.dataset(id)?.ok_or_else(|| {
        StudioError::NotFound(format!("no dataset {id}; the Datasets page lists them"))
    })
}

/// `GET /datasets/{id}`: the check report.
pub async fn report(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let row = find(&studio, id)?;
    let saved = read_saved(&row.report)?;
    Ok(page(
        &row.name,
        Section::Datasets,
        html! {
            div.row {
                h1 { (row.name) } (pass_badge(row.check_pass))
            }
            p.mono { (row.path.display()) }
            p.hint { "Checked " (when(row.checked)) " UTC · " (saved.report.errors) " errors, " (saved.report.warnings) " warnings" }
            div.row {
                form method="post" action={ "/datasets/" (id) "/check" } { button.secondary type="submit" { "Check again" } }
                @if row.check_pass { a href={ "/train/new?dataset=" (id) } { "Train on it →" } }
            }
            (counts_table(&saved))
            (histogram(&saved))
            img.card src={ "/datasets/" (id) "/histogram.png" } alt="class histogram, as semiclass check draws it" style="max-width:100%";
            h2 { "Problems" }
            @if saved.lines.is_empty() {
                p { "None." }
            } @else {
                ul.problem-list.card { @for line in &saved.lines { li class=(line.severity) { (line.text) } } }
            }
            h2 { "As " code { "semiclass check" } " prints it" }
            pre.yaml { (saved.summary) }
        },
    ))
}

fn counts_table(saved: &SavedCheck) -> Markup {
    let r = &saved.report;
    let c = &r.counts;
    let count = |s: &SplitView, id: usize| s.per_class.get(id).copied().unwrap_or(0);
    html! {
        h2 { "Images per split and class" }
        p { (r.num_classes) " classes · train " (c.train.total) " labeled · train_unlabeled " (c.unlabeled) " · val " (c.val.total)
            @if let Some(t) = &c.test { " · test " (t.total) } }
        table {
            thead { tr { th.num { "id" } th { "class" } th.num { "train" } th.num { "val" } @if c.test.is_some() { th.num { "test" } } } }
            tbody {
                @for (id, name) in r.class_names.iter().enumerate() {
                    tr { td.num { (id) } td { (name) } td.num { (count(&c.train, id)) } td.num { (count(&c.val, id)) }
                        @if let Some(t) = &c.test { td.num { (count(t, id)) } } }
                }
            }
        }
    }
}

/// Train images per class as bars (drawn by the page), then the PNG that
/// `semiclass check` writes.
fn histogram(saved: &SavedCheck) -> Markup {
    let r = &saved.report;
    let max = r
        .counts
        .train
        .per_class
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    html! {
        h2 { "Class histogram (train)" }
        div.card.bars {
            @for (id, name) in r.class_names.iter().enumerate() {
                @let n = r.counts.train.per_class.get(id).copied().unwrap_or(0);
                span { (name) }
                div { div.bar style={ "width:" (100 * n / max) "%" } {} }
                span.num { (n) }
            }
        }
    }
}

/// `GET /datasets/{id}/histogram.png`: the check's class histogram image.
pub async fn histogram_png(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Response, StudioError> {
    find(&studio, id)?;
    let path = report_dir(&studio, id).join(semiclass_dataset::report::HISTOGRAM_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        StudioError::NotFound(format!("{}: {e}; check the dataset again", path.display()))
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], bytes).into_response())
}

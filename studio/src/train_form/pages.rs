//! `GET /train/new` (the form), `POST /train/preview` (the resolved YAML
//! or the problems, as the user types), `POST /train` (queue the job).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::{CheckpointRow, DatasetRow, MarkRow};
use serde::Deserialize;

use super::{Field, MODES, ResolvedTraining, TrainRequest, resolve_request, schema};
use crate::datasets::pages::{find, go_to};
use crate::error::StudioError;
use crate::jobs::downloads::yaml_download;
use crate::layout::{Section, page};
use crate::marks::{current_checkpoints, describe};
use crate::state::Studio;

/// The fields offered as a choice of the zoo's models.
const MODEL_KEYS: &[&str] = &["large.model", "small.model"];

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    dataset: Option<i64>,
}

/// `GET /train/new[?dataset=ID]`.
pub async fn new_training(
    State(studio): State<Arc<Studio>>,
    Query(query): Query<NewQuery>,
) -> Result<Markup, StudioError> {
    let registry = studio.registry()?;
    let datasets: Vec<DatasetRow> = registry
        .datasets()?
        .into_iter()
        .filter(|d| d.check_pass)
        .collect();
    let marks = registry.marks()?;
    let teachers: Vec<CheckpointRow> = current_checkpoints(&registry)?
        .into_iter()
        .filter(|c| c.role == "large")
        .collect();
    Ok(page(
        "New training",
        Section::Train,
        html! {
            h1 { "New training" }
            @if datasets.is_empty() {
                p.card { "No dataset has passed its check yet: " a href="/datasets" { "add one" } " first." }
            } @else {
                form.stack hx-post="/train/preview" hx-trigger="load, input delay:400ms, change" hx-target="#preview" {
                    (head_fields(&datasets, query.dataset, &marks, &teachers))
                    @for group in schema() {
                        fieldset {
                            legend { code { (group.name) } }
                            @for field in &group.fields { (field_input(field)) }
                        }
                    }
                    div.row {
                        button type="submit" hx-post="/train" hx-target="#preview" { "Queue the training" }
                        // A plain form post: the answer is a file to save, not a fragment.
                        button.secondary type="submit" formaction="/train/config.yaml" formmethod="post" { "Download the YAML" }
                        span.hint { "Defaults are shown; an empty field is chosen when the run starts." }
                    }
                }
                h2 { "Resolved configuration" }
                div #preview {}
            }
        },
    ))
}

fn head_fields(
    datasets: &[DatasetRow],
    chosen: Option<i64>,
    marks: &[MarkRow],
    teachers: &[CheckpointRow],
) -> Markup {
    html! {
        fieldset {
            legend { "What to train" }
            label { "mode" select name="mode" {
                @for (mode, text) in MODES { option value=(mode) { (text) } }
            } }
            label { "dataset" select name="dataset" {
                @for d in datasets {
                    option value=(d.id) selected[chosen == Some(d.id)] { (d.name) " — " (d.path.display()) }
                }
            } }
            label { "teacher (mode small)" input type="text" name="teacher" list="marks" placeholder="checkpoint path or @nickname"; }
            // The marks, then the large checkpoints the registry's runs saved.
            datalist #marks {
                @for m in marks { option value={ "@" (m.nickname) } { (describe(&m.checkpoint)) } }
                @for c in teachers { option value=(c.path.display()) { (describe(c)) } }
            }
        }
    }
}

fn field_input(field: &Field) -> Markup {
    let placeholder = field
        .default
        .is_empty()
        .then_some("unset: chosen when the run starts");
    html! {
        label {
            code { (field.key) }
            @if MODEL_KEYS.contains(&field.key.as_str()) {
                select name=(field.key) {
                    @for entry in semiclass_models::MODELS {
                        option value=(entry.name) selected[entry.name == field.default] { (entry.name) " (" (entry.family) ")" }
                    }
                }
            } @else {
                input type="text" name=(field.key) value=(field.default) placeholder=[placeholder];
            }
        }
    }
}

/// The form's pairs as a request (the configuration keys all have a dot).
fn parse_form(pairs: Vec<(String, String)>) -> TrainRequest {
    let mut request = TrainRequest::default();
    for (key, value) in pairs {
        match key.as_str() {
            "mode" => request.mode = value,
            "dataset" => request.dataset = value.trim().parse().ok(),
            "teacher" => request.teacher = value,
            _ => request.values.push((key, value)),
        }
    }
    request
}

/// The request checked against the chosen dataset (which must have passed
/// its check) and the CLI's configuration rules.
fn checked(studio: &Studio, request: &TrainRequest) -> Result<ResolvedTraining, StudioError> {
    let id = request.dataset.ok_or_else(|| {
        StudioError::Invalid("choose a dataset (the Datasets page adds one)".into())
    })?;
    let dataset = find(studio, id)?;
    if !dataset.check_pass {
        return Err(StudioError::Invalid(format!(
            "{}: its check found errors; fix them and check it again before training",
            dataset.path.display()
        )));
    }
    resolve_request(request, &dataset.path)
}

/// `POST /train/preview`: the YAML `semiclass train` would save, or why not.
pub async fn preview(
    State(studio): State<Arc<Studio>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Markup, StudioError> {
    let resolved = checked(&studio, &parse_form(pairs))?;
    let args = resolved
        .overrides
        .iter()
        .map(|o| format!(" -o {o}"))
        .collect::<String>();
    Ok(html! {
        p.hint { "semiclass train --mode " (resolved.mode) (args) }
        pre.yaml { (resolved.yaml()) }
    })
}

/// `POST /train`: queue the training; its job page follows.
pub async fn submit(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, StudioError> {
    let request = parse_form(pairs);
    let resolved = checked(&studio, &request)?;
    let id = studio.jobs.enqueue_training(&resolved)?;
    Ok(go_to(&headers, &format!("/jobs/{id}")))
}

/// `POST /train/config.yaml`: the resolved configuration as a file, or
/// why it cannot be resolved.
pub async fn config_yaml(
    State(studio): State<Arc<Studio>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, StudioError> {
    let resolved = checked(&studio, &parse_form(pairs))?;
    let name = format!("semiclass-{}.yaml", resolved.mode);
    Ok(yaml_download(&name, resolved.yaml()))
}

//! The Jobs pages: the queue, one job's run page (live), cancel, resume.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::JobStatus;

use super::live::{live_area, status_part};
use super::run_files::RunFolder;
use super::run_parts::{curves_data, run_part};
use super::runner::find;
use crate::assets::{CURVES_PATH, UPLOT_CSS_PATH, UPLOT_PATH};
use crate::datasets::pages::go_to;
use crate::error::StudioError;
use crate::layout::{Section, page, when};
use crate::state::Studio;

/// `GET /jobs`.
pub async fn list(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let jobs = studio.registry()?.jobs()?;
    Ok(page(
        "Jobs",
        Section::Jobs,
        html! {
            h1 { "Jobs" }
            @if jobs.is_empty() {
                p.hint { "No job yet: " a href="/train/new" { "start a training" } "." }
            } @else {
                table {
                    thead { tr { th.num { "#" } th { "Job" } th { "Status" } th { "Queued" } th { "Ended" } } }
                    tbody {
                        @for job in &jobs {
                            tr {
                                td.num { (job.id) }
                                td { a href={ "/jobs/" (job.id) } { (job.title) } }
                                td { (status_badge(job.status)) }
                                td { (when(job.created)) }
                                td { @if let Some(t) = job.ended { (when(t)) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn status_badge(status: JobStatus) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str()) } }
}

/// `GET /jobs/{id}`: the run's page. Its status, then what the stream
/// keeps current: the curves, the stage table, each model's summary and
/// checkpoints, the log; then what it runs.
pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let registry = studio.registry()?;
    let job = find(&registry, id)?;
    let folder = RunFolder::of_job(&job);
    let (curves, rows) = curves_data(&folder);
    let live = html! {
        // Inside the stream's element: the status looks again when it says something.
        (status_part(&job))
        h2 { "Curves" }
        div #curves .curves { p.hint.no-curves { "The curves start with the first logged step." } }
        (curves)
        (run_part(&registry, &folder))
    };
    Ok(page(
        &format!("Job {id}"),
        Section::Jobs,
        html! {
            link rel="stylesheet" href=(UPLOT_CSS_PATH);
            script src=(UPLOT_PATH) defer {}
            script src=(CURVES_PATH) defer {}
            h1 { "Job " (id) ": " (job.title) }
            (live_area(&job, &rows, live))
            h2 { "Command" }
            pre.yaml { "semiclass " (job.args.join(" ")) }
            h2 { "Configuration " a.hint href={ "/jobs/" (id) "/config.yaml" } download { "(download the YAML)" } }
            pre.yaml { (job.config) }
            (crate::job_results::result_part(&studio, &job))
        },
    ))
}

/// `POST /jobs/{id}/cancel`.
pub async fn cancel(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, StudioError> {
    studio.jobs.cancel(id)?;
    Ok(go_to(&headers, &format!("/jobs/{id}")))
}

/// `POST /jobs/{id}/resume`.
pub async fn resume(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, StudioError> {
    studio.jobs.resume(id)?;
    Ok(go_to(&headers, &format!("/jobs/{id}")))
}

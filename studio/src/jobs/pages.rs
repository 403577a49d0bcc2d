//! The Jobs pages: the queue, one job with its live log, cancel, resume.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::JobStatus;

use super::live::{log_part, status_part};
use super::runner::find;
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

/// `GET /jobs/{id}`.
pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let job = find(&studio.registry()?, id)?;
    Ok(page(
        &format!("Job {id}"),
        Section::Jobs,
        html! {
            h1 { "Job " (id) ": " (job.title) }
            (status_part(&job))
            h2 { "Log " a.hint href={ "/jobs/" (id) "/log" } { "(whole file)" } }
            (log_part(&job))
            h2 { "Command" }
            pre.yaml { "semiclass " (job.args.join(" ")) }
            h2 { "Configuration" }
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

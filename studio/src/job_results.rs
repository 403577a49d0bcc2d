//! What an evaluation or export job leaves, linked from its job page once
//! it finished: the report page, or the package's download. While the job
//! runs the part asks again every few seconds (`GET /jobs/{id}/result`).

use std::sync::Arc;

use axum::extract::{Path, State};
use maud::{Markup, html};
use semiclass_registry::{JobRow, JobStatus};

use crate::deploy::packages;
use crate::error::StudioError;
use crate::jobs::runner::find;
use crate::state::Studio;

/// The part for `job`: nothing for a training (its page shows its run).
pub fn result_part(studio: &Studio, job: &JobRow) -> Markup {
    if !matches!(job.kind.as_str(), "eval" | "export") {
        return html! {};
    }
    match job.status {
        JobStatus::Queued | JobStatus::Running => html! {
            div #job-result hx-get={ "/jobs/" (job.id) "/result" } hx-trigger="every 2s" hx-swap="outerHTML" {}
        },
        JobStatus::Finished => match finished_link(studio, job) {
            Some((href, text, download)) => html! {
                p.card #job-result { a href=(href) download[download] { (text) } }
            },
            None => html! {},
        },
        _ => html! {},
    }
}

/// The link to what a finished job made, when it is still there.
fn finished_link(studio: &Studio, job: &JobRow) -> Option<(String, String, bool)> {
    if job.kind == "eval" {
        let evals = studio.registry().ok()?.evals(None).ok()?;
        let eval = evals
            .iter()
            .find(|e| e.out_dir.as_deref() == Some(job.run_dir.as_path()))?;
        return Some((
            format!("/evals/{}", eval.id),
            "Open the evaluation report".into(),
            false,
        ));
    }
    let name = job.run_dir.file_name()?.to_str()?;
    let package = packages::find(studio, name).ok()?;
    let file = package.zip.file_name()?.to_string_lossy().into_owned();
    Some((
        format!("/deploy/packages/{name}/download"),
        format!("Download {file}"),
        true,
    ))
}

/// `GET /jobs/{id}/result`.
pub async fn result(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let job = find(&studio.registry()?, id)?;
    Ok(result_part(&studio, &job))
}

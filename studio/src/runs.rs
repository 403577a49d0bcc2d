//! The Runs pages: every run the registry recorded, whoever started it
//! (a studio job, `semiclass train` in a terminal, `make demo`), drawn
//! from its run folder with the same parts as a job's page.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::{Registry, RunRow};

use crate::assets::{CURVES_PATH, UPLOT_CSS_PATH, UPLOT_PATH};
use crate::error::StudioError;
use crate::jobs::downloads::send_file;
use crate::jobs::run_files::RunFolder;
use crate::jobs::run_parts::{curves_data, run_part};
use crate::layout::{Section, page, when};
use crate::state::Studio;

/// `GET /runs`.
pub async fn list(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let runs = studio.registry()?.runs()?;
    Ok(page(
        "Runs",
        Section::Runs,
        html! {
            h1 { "Runs" }
            p.hint { "Every training the registry recorded: the studio's jobs, "
                code { "semiclass train" } " in a terminal and " code { "make demo" } "." }
            @if runs.is_empty() {
                p.hint { "No run yet: " a href="/train/new" { "start a training" } "." }
            } @else {
                table.runs {
                    thead { tr { th.num { "#" } th { "Run" } th { "Mode" } th { "Status" } th { "Started" } th { "Ended" } th { "Folder" } } }
                    tbody {
                        @for run in &runs {
                            tr data-run=(run.name) {
                                td.num { (run.id) }
                                td { a href={ "/runs/" (run.id) } { (shown_name(run)) } }
                                td { (run.mode) }
                                td { span class={ "badge " (run.status.as_str()) } { (run.status.as_str()) } }
                                td { (when(run.started)) }
                                td { @if let Some(t) = run.ended { (when(t)) } }
                                td { code { (run.run_dir.display()) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /runs/{id}`: the curves, stages, summaries and checkpoints as the
/// run folder has them now (a studio job's page also follows them live).
pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let registry = studio.registry()?;
    let run = find(&registry, id)?;
    let folder = RunFolder::of_run(&run);
    let (curves, _) = curves_data(&folder);
    Ok(page(
        &format!("Run {}", shown_name(&run)),
        Section::Runs,
        html! {
            link rel="stylesheet" href=(UPLOT_CSS_PATH);
            script src=(UPLOT_PATH) defer {}
            script src=(CURVES_PATH) defer {}
            h1 { "Run " (shown_name(&run)) }
            div.row {
                span class={ "badge " (run.status.as_str()) } { (run.status.as_str()) }
                span.hint { (run.mode) " · started " (when(run.started)) }
                @if let Some(t) = run.ended { span.hint { "· ended " (when(t)) } }
                span.hint { "· " code { (run.run_dir.display()) } }
            }
            @if let Some(message) = &run.message { p.problems { (message) } }
            @if !run.run_dir.is_dir() {
                p.problems { (run.run_dir.display()) ": the run's folder is gone (moved or deleted); the registry still lists its checkpoints." }
            }
            h2 { "Curves" }
            div #curves .curves { p.hint.no-curves { "No step logged." } }
            (curves)
            (run_part(&registry, &folder))
            h2 { "Configuration" }
            pre.yaml { (run.config) }
        },
    ))
}

/// `GET /runs/{id}/files/{*path}`: a file of the run's folder.
pub async fn run_file(
    State(studio): State<Arc<Studio>>,
    Path((id, rel)): Path<(i64, String)>,
) -> Result<Response, StudioError> {
    let run = find(&studio.registry()?, id)?;
    send_file(&run.run_dir, &rel)
}

/// A joint run records its models as the runs `large` and `small` of its
/// folder: they are shown as `FOLDER/large`, `FOLDER/small`.
fn shown_name(run: &RunRow) -> String {
    let joint_folder = run
        .run_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .filter(|_| matches!(run.name.as_str(), "large" | "small"));
    match joint_folder {
        Some(folder) => format!("{folder}/{}", run.name),
        None => run.name.clone(),
    }
}

fn find(registry: &Registry, id: i64) -> Result<RunRow, StudioError> {
    registry
        .run(&id.to_string())?
        .filter(|run| run.id == id)
        .ok_or_else(|| StudioError::NotFound(format!("no run {id} in the registry")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use semiclass_registry::RunStatus;

    use super::*;

    fn run(name: &str, dir: &str) -> RunRow {
        RunRow {
            id: 1,
            name: name.into(),
            run_dir: PathBuf::from(dir),
            mode: "large".into(),
            config: String::new(),
            status: RunStatus::Finished,
            pid: None,
            started: 0,
            ended: None,
            message: None,
        }
    }

    #[test]
    fn a_joint_runs_models_are_named_by_their_folder() {
        let joint = run("large", "/runs/demo-20261207/large");
        assert_eq!(shown_name(&joint), "demo-20261207/large");
        let alone = run("large-1", "/runs/large-1");
        assert_eq!(shown_name(&alone), "large-1");
    }
}

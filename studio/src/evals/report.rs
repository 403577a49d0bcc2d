//! `GET /evals/{id}` (the report page) and `GET /evals/{id}/files/{name}`
//! (the report's own files): everything shown is read from what
//! `semiclass eval` wrote; nothing is scored again here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use semiclass_manifest::eval_report::{
    CONFUSION_COUNTS_FILE, CONFUSION_NORMALIZED_FILE, ClassScores, EvalReport, MISTAKES_FILE,
    REPORT_FILES,
};
use semiclass_registry::{EvalRow, EvalStatus};

use super::pages::{percent, source_text, status_text};
use crate::error::StudioError;
use crate::layout::{Section, page, when};
use crate::state::Studio;

pub fn find_eval(studio: &Studio, id: i64) -> Result<EvalRow, StudioError> {
    studio.registry()?.eval(id)?.ok_or_else(|| {
        StudioError::NotFound(format!(
            "no evaluation {id}; the Evaluations page lists them"
        ))
    })
}

/// `GET /evals/{id}`.
pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<i64>,
) -> Result<Markup, StudioError> {
    let eval = find_eval(&studio, id)?;
    let body = match (&eval.status, &eval.out_dir) {
        (EvalStatus::Finished, Some(dir)) => {
            let report = EvalReport::read(dir).map_err(|e| StudioError::NotFound(e.to_string()))?;
            report_body(id, &report)
        }
        (EvalStatus::Failed, _) => html! {
            div.problems role="alert" { p { (eval.message.clone().unwrap_or_default()) } }
        },
        _ => html! { p.card { "Still running; its job's page shows the progress." } },
    };
    Ok(page(
        &format!("Evaluation {id}"),
        Section::Evals,
        html! {
            h1 { "Evaluation " (id) }
            p.hint {
                (status_text(eval.status)) " · " (eval.checkpoint.model) " " (eval.checkpoint.stage)
                " epoch " (eval.checkpoint.epoch) " · on " (source_text(&eval)) " of "
                code { (eval.dataset.display()) } " · " (when(eval.started))
            }
            p.hint { "checkpoint " code { (eval.checkpoint.path.display()) } }
            (body)
        },
    ))
}

fn report_body(id: i64, report: &EvalReport) -> Markup {
    let file = |name: &str| format!("/evals/{id}/files/{name}");
    html! {
        div.row.metrics {
            div.card { div.hint { "top-1" } div.big #top1 { (percent(report.top1)) } }
            div.card { div.hint { "top-5" } div.big #top5 { (percent(report.top5)) } }
            div.card { div.hint { "macro F1" } div.big { (percent(report.macro_avg.f1)) } }
            div.card { div.hint { "images" } div.big { (report.count) } }
            div.card { div.hint { "loss" } div.big { (format!("{:.4}", report.loss)) } }
        }
        h2 { "Per class" }
        (classes_table(report))
        p.hint {
            "Files: " @for name in REPORT_FILES { a href=(file(name)) { (name) } " " }
        }
        h2 { "Confusion matrices" }
        div.grid2 {
            img.figure src=(file(CONFUSION_COUNTS_FILE)) alt="confusion matrix, counts";
            img.figure src=(file(CONFUSION_NORMALIZED_FILE)) alt="confusion matrix, normalized by true class";
        }
        h2 { "Most confident mistakes" }
        @if report.mistakes.is_empty() {
            p.hint { "No mistakes on " (report.count) " images." }
        } @else {
            img.figure src=(file(MISTAKES_FILE)) alt="the most confident mistakes";
            table {
                thead { tr { th { "image" } th { "true" } th { "predicted" } th.num { "score" } } }
                tbody { @for m in &report.mistakes {
                    tr { td { code { (m.path) } } td { (m.truth) } td { (m.predicted) } td.num { (format!("{:.3}", m.score)) } }
                } }
            }
        }
    }
}

fn classes_table(report: &EvalReport) -> Markup {
    let score = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into());
    let row = |c: &ClassScores| {
        html! { tr {
            td.num { (c.id) } td { (c.name) } td.num { (c.support) } td.num { (c.predicted) }
            td.num { (score(c.precision)) } td.num { (score(c.recall)) } td.num { (score(c.f1)) }
        } }
    };
    let average = |name: &str, a: &semiclass_manifest::eval_report::Averages| {
        html! { tr.total {
            td {} td { (name) } td {} td {}
            td.num { (format!("{:.3}", a.precision)) } td.num { (format!("{:.3}", a.recall)) } td.num { (format!("{:.3}", a.f1)) }
        } }
    };
    html! {
        table #classes {
            thead { tr {
                th.num { "id" } th { "class" } th.num { "images" } th.num { "predicted" }
                th.num { "precision" } th.num { "recall" } th.num { "F1" }
            } }
            tbody {
                @for c in &report.classes { (row(c)) }
                (average("macro average", &report.macro_avg))
                (average("weighted average", &report.weighted_avg))
            }
        }
    }
}

/// `GET /evals/{id}/files/{name}`: only the files `semiclass eval` writes,
/// by their fixed names, so no request reaches outside the report folder.
pub async fn file(
    State(studio): State<Arc<Studio>>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<Response, StudioError> {
    let Some(&name) = REPORT_FILES.iter().find(|&&f| f == name) else {
        return Err(StudioError::NotFound(format!(
            "{name}: not a file of an evaluation report (those are {})",
            REPORT_FILES.join(", ")
        )));
    };
    let eval = find_eval(&studio, id)?;
    let dir = eval
        .out_dir
        .ok_or_else(|| StudioError::NotFound(format!("evaluation {id} has no report folder")))?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path)
        .map_err(|e| StudioError::NotFound(format!("{}: {e}", path.display())))?;
    let kind = match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/csv; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

//! The parts of a run's page drawn from its run directory: the per-stage
//! progress (the stage table), each model's summary, its checkpoints (to
//! download or mark), and the data the curves start from.

use maud::{Markup, PreEscaped, html};
use semiclass_registry::{MarkRow, Registry};

use semiclass_metrics::summary::Summary;

use super::run_files::{
    CURVE_COLUMNS, CheckpointFile, ModelDir, RunFolder, StageProgress, checkpoint_files,
    curve_rows, stages,
};

/// A share as a percentage, `–` when unknown.
pub fn percent(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "–".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", (b as f64 / 1024.0).ceil()),
    }
}

/// `#run`: what the run directory says now. Sent again over a job's
/// event stream whenever the trainer writes (`progress` events).
pub fn run_part(registry: &Registry, run: &RunFolder) -> Markup {
    let models = run.model_dirs();
    let all: Vec<(ModelDir, Vec<StageProgress>, Option<Summary>)> = models
        .into_iter()
        .map(|m| {
            let summary = m.summary();
            let stages = m
                .metrics()
                .map(|t| stages(&m, &t, summary.as_ref()))
                .unwrap_or_default();
            (m, stages, summary)
        })
        .collect();
    let any_stage = all.iter().any(|(_, s, _)| !s.is_empty());
    let marks = registry.marks().unwrap_or_default();
    html! {
        section #run sse-swap="progress" hx-swap="outerHTML" {
            h2 { "Stages" }
            @if any_stage {
                (stage_table(all.iter().flat_map(|(_, s, _)| s)))
            } @else {
                p.hint { "No step logged yet: the first stage starts once the images are decoded." }
            }
            @for (model, _, summary) in &all {
                @if let Some(summary) = summary { (summary_card(run, model, summary)) }
            }
            @for (model, _, _) in &all {
                (checkpoints_table(run, model, &checkpoint_files(registry, &run.dir, model), &marks))
            }
        }
    }
}

fn stage_table<'a>(stages: impl Iterator<Item = &'a StageProgress>) -> Markup {
    html! {
        table.stages {
            thead { tr {
                th { "Model" } th { "Stage" } th { "Progress" } th.num { "Epoch" }
                th.num { "Last val top-1" } th.num { "Best val top-1" }
            } }
            tbody {
                @for s in stages {
                    tr data-stage={ (s.model) "/" (s.stage) } data-done=(s.done) {
                        td { (s.model) }
                        td { code { (s.stage) } }
                        td { (progress_cell(s)) }
                        td.num { @if let Some(e) = s.epoch { (e) } }
                        td.num { (percent(s.last_top1)) }
                        td.num { (percent(s.best_top1)) }
                    }
                }
            }
        }
    }
}

fn progress_cell(s: &StageProgress) -> Markup {
    // The last logged step: a stage that stopped on a plateau, or whose
    // length the log interval does not divide, ends before its planned end.
    let text = match (s.done, s.step, s.steps) {
        (true, _, _) => "done".to_string(),
        (false, Some(step), Some(steps)) => format!("step {step}/{steps}"),
        (false, Some(step), None) => format!("step {step}"),
        _ => String::new(),
    };
    let width = s.fraction().map_or(0.0, |f| 100.0 * f);
    html! {
        div.progress role="progressbar" aria-valuenow=(format!("{width:.0}")) aria-valuemin="0" aria-valuemax="100" {
            div.fill style={ "width:" (format!("{width:.1}")) "%" } {}
        }
        span.hint { (text) }
    }
}

fn summary_card(run: &RunFolder, model: &ModelDir, s: &Summary) -> Markup {
    let best = s.best.strip_prefix(&run.dir).ok().and_then(|p| p.to_str());
    html! {
        div.card.summary data-model=(model.model) {
            h3 { (model.model) " model: summary" }
            dl.facts {
                dt { "best checkpoint" }
                dd { @match best {
                    Some(rel) => a href=(download_url(run, rel)) download { (rel) },
                    None => code { (s.best.display()) },
                } " (stage " code { (s.best_stage) } ")" }
                dt { "val top-1" } dd { (percent(s.val_top1)) }
                @if let Some(n) = s.test_images {
                    dt { "test top-1 / top-5" }
                    dd { (percent(s.test_top1)) " / " (percent(s.test_top5)) " on " (n) " images of test.txt" }
                }
                @if let Some(b) = &s.baseline {
                    dt { "baseline" }
                    dd { (b.describe()) ": val " (percent(Some(b.val_top1)))
                        @if b.test_top1.is_some() { ", test " (percent(b.test_top1)) } }
                }
                @if let Some(flip) = s.flip {
                    dt { "horizontal flips" } dd { @if flip { "used" } @else { "not used (classes change in a mirror)" } }
                }
            }
        }
    }
}

/// Where a file of the run directory is downloaded.
pub fn download_url(run: &RunFolder, rel: &str) -> String {
    let encoded: Vec<String> = rel.split('/').map(url_segment).collect();
    format!("{}/{}", run.files_url, encoded.join("/"))
}

fn url_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn checkpoints_table(
    run: &RunFolder,
    model: &ModelDir,
    files: &[CheckpointFile],
    marks: &[MarkRow],
) -> Markup {
    html! {
        @if !files.is_empty() {
            h3 { (model.model) " model: checkpoints" }
            table.checkpoints {
                thead { tr {
                    th { "File" } th.num { "Size" } th { "Stage" } th.num { "Step" }
                    th.num { "Val top-1" } th { "Nickname" }
                } }
                tbody { @for f in files { (checkpoint_row(run, f, marks)) } }
            }
        }
    }
}

fn checkpoint_row(run: &RunFolder, f: &CheckpointFile, marks: &[MarkRow]) -> Markup {
    let record = f.record.as_ref();
    let nicknames = marks
        .iter()
        .filter(|m| record.is_some_and(|r| r.id == m.checkpoint.id));
    html! {
        tr data-file=(f.rel) {
            td { a href=(download_url(run, &f.rel)) download { (f.rel) } }
            td.num { (size(f.bytes)) }
            td { @if let Some(r) = record { code { (r.stage) } } }
            td.num { @if let Some(r) = record { (r.step) } }
            td.num { (percent(record.and_then(|r| r.metrics.get("val_top1").copied()))) }
            td {
                @for m in nicknames { code.nick { "@" (m.nickname) } " " }
                @if let Some(r) = record {
                    a.button href={ "/marks?checkpoint=" (r.id) } { "Mark…" }
                } @else {
                    span.hint { "not in the registry" }
                }
            }
        }
    }
}

/// The curves' data as the page starts with it (JSON in a data block the
/// page's script reads; never executed), and the row counts the event
/// stream continues from.
pub fn curves_data(run: &RunFolder) -> (Markup, Vec<usize>) {
    let mut counts = Vec::new();
    let models: Vec<serde_json::Value> = run
        .model_dirs()
        .iter()
        .map(|m| {
            let rows = m.metrics().map(|t| curve_rows(&t, 0)).unwrap_or_default();
            counts.push(rows.len());
            serde_json::json!({ "model": m.model, "rows": rows })
        })
        .collect();
    let data = serde_json::json!({ "columns": CURVE_COLUMNS, "models": models });
    // `</` cannot end the block early: JSON allows `\/` for `/`.
    let text = data.to_string().replace("</", "<\\/");
    let markup = html! {
        script #curves-data type="application/json" { (PreEscaped(text)) }
    };
    (markup, counts)
}

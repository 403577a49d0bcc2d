//! `GET /marks` (every nickname, its checkpoint, its history),
//! `POST /marks` (mark, or move a nickname), `POST /marks/unmark`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use semiclass_registry::{CheckpointRow, MarkEvent, MarkRow, Registry};
use serde::Deserialize;

use super::{MarkRequest, current_checkpoints, describe, short_path};
use crate::datasets::pages::go_to;
use crate::error::StudioError;
use crate::jobs::run_parts::percent;
use crate::layout::{Section, page, when};
use crate::state::Studio;

#[derive(Debug, Deserialize)]
pub struct MarksQuery {
    /// The checkpoint the mark form starts with (a run page's "Mark…").
    checkpoint: Option<i64>,
}

/// `GET /marks[?checkpoint=ID]`.
pub async fn list(
    State(studio): State<Arc<Studio>>,
    Query(query): Query<MarksQuery>,
) -> Result<Markup, StudioError> {
    let registry = studio.registry()?;
    let marks = registry.marks()?;
    let checkpoints = current_checkpoints(&registry)?;
    let history = registry.mark_history(None)?;
    Ok(page(
        "Marks",
        Section::Marks,
        html! {
            h1 { "Marks" }
            p.hint { "A nickname names one checkpoint; " code { "@nickname" } " works wherever a checkpoint goes: the teacher of a small model, resume, evaluation, export. Marking a nickname again moves it; its history is kept." }
            (mark_form(&checkpoints, query.checkpoint))
            h2 { "Nicknames" }
            @if marks.is_empty() {
                p.hint { "No nickname yet." }
            } @else {
                (marks_table(&marks, &checkpoints))
            }
            h2 { "History" }
            (history_part(&registry, &history))
        },
    ))
}

fn checkpoint_options(checkpoints: &[CheckpointRow], chosen: Option<i64>) -> Markup {
    html! {
        @for c in checkpoints {
            option value=(c.id) selected[chosen == Some(c.id)] { (describe(c)) }
        }
    }
}

fn mark_form(checkpoints: &[CheckpointRow], chosen: Option<i64>) -> Markup {
    html! {
        section.card {
            h2 { "Mark a checkpoint" }
            @if checkpoints.is_empty() {
                p.hint { "No checkpoint yet: they appear here once a training has saved one." }
            } @else {
                form.stack #mark-form hx-post="/marks" hx-target="#mark-result" {
                    label { "checkpoint" select name="checkpoint" { (checkpoint_options(checkpoints, chosen)) } }
                    label { "nickname" input type="text" name="nickname" placeholder="best-on-dataset-A" required; }
                    label { "note (kept in the history)" input type="text" name="note" placeholder="why this one"; }
                    div.row { button type="submit" { "Mark" } }
                }
                div #mark-result {}
            }
        }
    }
}

fn marks_table(marks: &[MarkRow], checkpoints: &[CheckpointRow]) -> Markup {
    html! {
        table.marks {
            thead { tr {
                th { "Nickname" } th { "Checkpoint" } th.num { "Val top-1" } th { "Marked" } th { "Note" } th { "Move to" } th {}
            } }
            tbody {
                @for m in marks {
                    tr data-nickname=(m.nickname) {
                        td { code { "@" (m.nickname) } }
                        td { span.mono title=(m.checkpoint.path.display()) { (short_path(&m.checkpoint.path)) }
                            br; span.hint { (m.checkpoint.role) " " (m.checkpoint.model) ", stage " (m.checkpoint.stage) } }
                        td.num { (percent(m.checkpoint.metrics.get("val_top1").copied())) }
                        td { (when(m.marked)) }
                        td { @if let Some(n) = &m.note { (n) } }
                        td {
                            form.row.compact hx-post="/marks" hx-target="#mark-result" {
                                input type="hidden" name="nickname" value=(m.nickname);
                                select name="checkpoint" aria-label={ "move @" (m.nickname) " to" } { (checkpoint_options(checkpoints, Some(m.checkpoint.id))) }
                                button.secondary type="submit" { "Move" }
                            }
                        }
                        td {
                            form hx-post="/marks/unmark" hx-target="#mark-result" hx-confirm={ "Remove @" (m.nickname) "? Its history stays." } {
                                input type="hidden" name="nickname" value=(m.nickname);
                                button.secondary type="submit" { "Unmark" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Every nickname's events, oldest first, one block per nickname.
fn history_part(registry: &Registry, history: &[MarkEvent]) -> Markup {
    let mut by_nick: BTreeMap<&str, Vec<&MarkEvent>> = BTreeMap::new();
    for e in history {
        by_nick.entry(&e.nickname).or_default().push(e);
    }
    let path = |id: Option<i64>| match id {
        Some(id) => registry
            .checkpoint(id)
            .ok()
            .flatten()
            .map_or_else(|| format!("#{id}"), |c| short_path(&c.path)),
        None => "–".into(),
    };
    html! {
        @if by_nick.is_empty() { p.hint { "Nothing marked yet." } }
        @for (nick, events) in &by_nick {
            details.history data-nickname=(nick) open {
                summary { code { "@" (nick) } " · " (events.len()) " event(s)" }
                table {
                    thead { tr { th { "When (UTC)" } th { "Action" } th { "Checkpoint" } th { "Before" } th { "Note" } } }
                    tbody {
                        @for e in events {
                            tr {
                                td { (when(e.at)) }
                                td { (e.action.as_str()) }
                                td.mono { (path(e.checkpoint_id)) }
                                td.mono { (path(e.previous_id)) }
                                td { @if let Some(n) = &e.note { (n) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct MarkForm {
    nickname: String,
    checkpoint: String,
    note: Option<String>,
}

/// `POST /marks`: mark a checkpoint, or move a nickname to another one.
pub async fn mark(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(form): Form<MarkForm>,
) -> Result<Response, StudioError> {
    let checkpoint = form.checkpoint.trim().parse().map_err(|_| {
        StudioError::Invalid(format!(
            "checkpoint '{}': not a checkpoint id; choose one of the list",
            form.checkpoint
        ))
    })?;
    let request = MarkRequest {
        nickname: form.nickname,
        checkpoint,
        note: form.note,
    };
    tokio::task::spawn_blocking(move || super::mark(&mut studio.registry()?, &request))
        .await
        .map_err(|e| StudioError::Internal(format!("marking stopped: {e}")))??;
    Ok(go_to(&headers, "/marks"))
}

#[derive(Debug, Deserialize)]
pub struct UnmarkForm {
    nickname: String,
}

/// `POST /marks/unmark`.
pub async fn unmark(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(form): Form<UnmarkForm>,
) -> Result<Response, StudioError> {
    super::unmark(&mut studio.registry()?, &form.nickname)?;
    Ok(go_to(&headers, "/marks"))
}

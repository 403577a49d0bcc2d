//! A job as it runs: its status part (fetched again every few seconds
//! while it may change), and one stream of server-sent events from where
//! the page's copy ended: the log line by line (`line`), the run
//! directory's stage table, summary and checkpoints whenever the trainer
//! writes (`progress`), the curves' new metrics rows (`metrics`, JSON), and
//! `end` once the job has ended.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use maud::{Markup, html};
use semiclass_registry::{JobRow, JobStatus};
use serde::Deserialize;

use super::run_files::{ModelDir, RunFolder, curve_rows};
use super::run_parts::run_part;
use super::runner::find;
use crate::error::StudioError;
use crate::layout::when;
use crate::state::Studio;

/// The end of a log the page starts with.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// How often the stream looks for new lines.
const LOG_POLL: Duration = Duration::from_millis(500);

/// Whether the job may still change.
pub fn is_live(job: &JobRow) -> bool {
    matches!(job.status, JobStatus::Queued | JobStatus::Running)
}

/// `GET /jobs/{id}/status`.
pub async fn status(
    State(studio): State<Arc<Studio>>,
    UrlPath(id): UrlPath<i64>,
) -> Result<Markup, StudioError> {
    Ok(status_part(&find(&studio.registry()?, id)?))
}

/// The status, the buttons and the message.
pub fn status_part(job: &JobRow) -> Markup {
    let live = is_live(job);
    let url = format!("/jobs/{}/status", job.id);
    html! {
        section #status hx-get=[live.then_some(&url)] hx-trigger=[live.then_some("every 3s, sse:progress, sse:end")] hx-swap="outerHTML" {
            div.row {
                span class={ "badge " (job.status.as_str()) } { (job.status.as_str()) }
                @if let Some(t) = job.started { span.hint { "started " (when(t)) } }
                @if let Some(t) = job.ended { span.hint { "· ended " (when(t)) } }
                @if live {
                    form method="post" action={ "/jobs/" (job.id) "/cancel" } { button.secondary type="submit" { "Cancel" } }
                }
                @if job.status.is_resumable() {
                    form method="post" action={ "/jobs/" (job.id) "/resume" } { button type="submit" { "Resume" } }
                }
            }
            @if let Some(message) = &job.message { p.problems { (message) } }
        }
    }
}

/// What the stream updates, inside the one element that holds the
/// stream (a live job's only): `parts` carry their `sse-swap` names.
/// `rows` are the curves' row counts the page starts with, per model.
pub fn live_area(job: &JobRow, rows: &[usize], parts: Markup) -> Markup {
    let (text, end) = log_tail(&job.log_path);
    let rows: Vec<String> = rows.iter().map(usize::to_string).collect();
    let events = format!("/jobs/{}/events?from={end}&rows={}", job.id, rows.join(","));
    let live = is_live(job);
    html! {
        div #live hx-ext=[live.then_some("sse")] sse-connect=[live.then_some(&events)] sse-close="end" {
            (parts)
            // The curves' script takes these rows (htmx:sseMessage); nothing is swapped.
            div #metrics-events hidden sse-swap="metrics" hx-swap="none" {}
            h2 { "Log " a.hint href={ "/jobs/" (job.id) "/log" } { "(whole file)" } }
            pre.log #log sse-swap="line" hx-swap="beforeend" { (text) }
        }
    }
}

/// The last whole lines of a log and the file's length then.
fn log_tail(path: &Path) -> (String, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (String::new(), 0);
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut bytes))
        .is_err()
    {
        return (format!("{}: cannot read the log", path.display()), len);
    }
    let end = start + bytes.len() as u64;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .skip(usize::from(start > 0))
        .map(last_redraw)
        .collect();
    (lines.join("\n") + "\n", end)
}

/// Progress bars redraw with carriage returns: a line's last state.
fn last_redraw(line: &str) -> &str {
    line.rsplit('\r').next().unwrap_or(line)
}

/// `GET /jobs/{id}/log`: the whole log, as text.
pub async fn log_file(
    State(studio): State<Arc<Studio>>,
    UrlPath(id): UrlPath<i64>,
) -> Result<Response, StudioError> {
    let job = find(&studio.registry()?, id)?;
    let text = std::fs::read(&job.log_path).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Debug, Deserialize)]
pub struct StreamFrom {
    /// The log's length the page has.
    #[serde(default)]
    from: u64,
    /// The metrics rows the page has, per model, comma-separated.
    #[serde(default)]
    rows: String,
}

/// `GET /jobs/{id}/events?from=N&rows=A,B`: `line`, `progress` and
/// `metrics` events as the job writes, then one `end` once it has ended.
pub async fn events(
    State(studio): State<Arc<Studio>>,
    UrlPath(id): UrlPath<i64>,
    Query(from): Query<StreamFrom>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, StudioError> {
    let job = find(&studio.registry()?, id)?;
    let rows: Vec<usize> = from
        .rows
        .split(',')
        .map(|n| n.trim().parse().unwrap_or(0))
        .collect();
    let models = RunFolder::of_job(&job)
        .model_dirs()
        .into_iter()
        .enumerate()
        .map(|(i, dir)| Watched {
            sent_rows: rows.get(i).copied().unwrap_or(0),
            // Unseen: the first look sends the rows after the page's.
            seen: [None, None],
            dir,
        })
        .collect();
    let follow = Follow {
        studio,
        job,
        offset: from.from,
        models,
        queue: VecDeque::new(),
        ended: false,
    };
    let stream = stream::unfold(follow, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok::<_, std::convert::Infallible>(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One model folder of the run, as far as the page has it.
struct Watched {
    dir: ModelDir,
    sent_rows: usize,
    seen: [Option<(u64, std::time::SystemTime)>; 2],
}

/// Following one job.
struct Follow {
    studio: Arc<Studio>,
    job: JobRow,
    offset: u64,
    models: Vec<Watched>,
    queue: VecDeque<Event>,
    ended: bool,
}

impl Follow {
    /// The next event; `None` once `end` was sent.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if let Some(lines) = self.new_lines() {
                self.queue
                    .push_back(Event::default().event("line").data(lines));
            }
            // The status after the reads: what was written before the end is sent first.
            let live = self.still_live();
            self.look_at_run(!live);
            if !live {
                self.ended = true;
                self.queue
                    .push_back(Event::default().event("end").data("end"));
            }
            if self.queue.is_empty() {
                tokio::time::sleep(LOG_POLL).await;
            }
        }
    }

    /// Queues `metrics` rows and the `progress` part when the trainer has
    /// written since the last look (or, at the `last` look, in any case: a
    /// checkpoint may have been recorded since).
    fn look_at_run(&mut self, last: bool) {
        let mut changed = last;
        for (i, watched) in self.models.iter_mut().enumerate() {
            let now = watched.dir.signature();
            if now == watched.seen {
                continue;
            }
            watched.seen = now;
            changed = true;
            let Some(table) = watched.dir.metrics() else {
                continue;
            };
            let rows = curve_rows(&table, watched.sent_rows);
            if rows.is_empty() {
                continue;
            }
            let data = serde_json::json!({ "model": i, "from": watched.sent_rows, "rows": rows });
            watched.sent_rows += rows.len();
            self.queue
                .push_back(Event::default().event("metrics").data(data.to_string()));
        }
        if changed && let Ok(registry) = self.studio.registry() {
            let html = run_part(&registry, &RunFolder::of_job(&self.job)).into_string();
            self.queue
                .push_back(Event::default().event("progress").data(html));
        }
    }

    /// The whole lines written since the last look, escaped for HTML.
    fn new_lines(&mut self) -> Option<String> {
        let mut file = std::fs::File::open(&self.job.log_path).ok()?;
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        let complete = bytes.iter().rposition(|&b| b == b'\n')? + 1;
        self.offset += complete as u64;
        let text = String::from_utf8_lossy(&bytes[..complete]);
        let html = html! { @for line in text.lines() { (last_redraw(line)) "\n" } };
        Some(html.into_string())
    }

    fn still_live(&self) -> bool {
        let job = self
            .studio
            .registry()
            .ok()
            .and_then(|r| r.job(self.job.id).ok().flatten());
        job.as_ref().is_some_and(is_live)
    }
}

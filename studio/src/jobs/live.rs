//! A job as it runs: its status part (fetched again every few seconds
//! while it may change) and its log, streamed line by line as
//! server-sent events from where the page's copy ended.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
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
        section #status hx-get=[live.then_some(&url)] hx-trigger=[live.then_some("every 3s, sse:end")] hx-swap="outerHTML" {
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

/// The log as the page first shows it, and where the stream continues.
pub fn log_part(job: &JobRow) -> Markup {
    let (text, end) = log_tail(&job.log_path);
    let events = format!("/jobs/{}/events?from={end}", job.id);
    html! {
        div hx-ext=[is_live(job).then_some("sse")] sse-connect=[is_live(job).then_some(&events)] sse-close="end" {
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
pub struct LogOffset {
    #[serde(default)]
    from: u64,
}

/// `GET /jobs/{id}/events?from=N`: `line` events with the log's new whole
/// lines (HTML), then one `end` event once the job has ended.
pub async fn events(
    State(studio): State<Arc<Studio>>,
    UrlPath(id): UrlPath<i64>,
    Query(from): Query<LogOffset>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, StudioError> {
    let job = find(&studio.registry()?, id)?;
    let follow = Follow {
        studio,
        id,
        path: job.log_path,
        offset: from.from,
        ended: false,
    };
    let stream = stream::unfold(follow, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok::<_, std::convert::Infallible>(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Following one job's log.
struct Follow {
    studio: Arc<Studio>,
    id: i64,
    path: PathBuf,
    offset: u64,
    ended: bool,
}

impl Follow {
    /// The next event; `None` once `end` was sent.
    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(lines) = self.new_lines() {
                return Some(Event::default().event("line").data(lines));
            }
            // The status after the read: lines written before the end are sent first.
            if !self.still_live() {
                self.ended = true;
                return Some(Event::default().event("end").data("end"));
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }

    /// The whole lines written since the last look, escaped for HTML.
    fn new_lines(&mut self) -> Option<String> {
        let mut file = std::fs::File::open(&self.path).ok()?;
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
            .and_then(|r| r.job(self.id).ok().flatten());
        job.as_ref().is_some_and(is_live)
    }
}

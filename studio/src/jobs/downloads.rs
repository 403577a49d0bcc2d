//! Files of a job offered as downloads: any file of its run directory
//! (checkpoints, metrics, curves), never anything outside it, and its
//! resolved configuration.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::runner::find;
use crate::error::StudioError;
use crate::state::Studio;

/// Read and sent a piece at a time: a large model's checkpoint is over a GB.
const CHUNK: usize = 256 * 1024;

/// `GET /jobs/{id}/files/{*path}`: a file of the job's run directory.
pub async fn run_file(
    State(studio): State<Arc<Studio>>,
    UrlPath((id, rel)): UrlPath<(i64, String)>,
) -> Result<Response, StudioError> {
    let job = find(&studio.registry()?, id)?;
    send_file(&job.run_dir, &rel)
}

/// The file `rel` of the run folder `root`, streamed as a download.
pub fn send_file(root: &Path, rel: &str) -> Result<Response, StudioError> {
    let path = inside(root, rel)?;
    let file = std::fs::File::open(&path).map_err(|e| {
        StudioError::NotFound(format!("{rel}: cannot open it in the run's folder: {e}"))
    })?;
    let len = file.metadata().map_or(0, |m| m.len());
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download");
    let headers = [
        (header::CONTENT_TYPE, content_type(name).to_string()),
        (header::CONTENT_LENGTH, len.to_string()),
        (header::CONTENT_DISPOSITION, attachment(name)),
    ];
    Ok((headers, Body::from_stream(chunks(file))).into_response())
}

/// `GET /jobs/{id}/config.yaml`: the job's resolved configuration.
pub async fn config_yaml(
    State(studio): State<Arc<Studio>>,
    UrlPath(id): UrlPath<i64>,
) -> Result<Response, StudioError> {
    let job = find(&studio.registry()?, id)?;
    Ok(yaml_download(&format!("job-{id}-config.yaml"), job.config))
}

/// A YAML text offered as a file to save.
pub fn yaml_download(name: &str, yaml: String) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            "application/yaml; charset=utf-8".to_string(),
        ),
        (header::CONTENT_DISPOSITION, attachment(name)),
    ];
    (headers, yaml).into_response()
}

/// `rel` under `root`, refused when it would leave it: only plain names
/// (no `..`, no absolute path), and after following links the file must
/// still be inside `root` and a regular file.
pub fn inside(root: &Path, rel: &str) -> Result<PathBuf, StudioError> {
    let refuse = |why: &str| {
        StudioError::Invalid(format!(
            "{rel}: {why}; only files inside the run's folder can be downloaded"
        ))
    };
    let relative = Path::new(rel);
    if rel.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(refuse("not a plain path inside the run's folder"));
    }
    let missing =
        || StudioError::NotFound(format!("{rel}: no such file in the run's folder (yet)"));
    let root = root.canonicalize().map_err(|_| missing())?;
    let path = root.join(relative).canonicalize().map_err(|_| missing())?;
    if !path.starts_with(&root) {
        return Err(refuse("it leads outside the run's folder"));
    }
    if !path.is_file() {
        return Err(refuse("not a file"));
    }
    Ok(path)
}

/// `Content-Disposition` that saves under the file's own name (characters
/// a header cannot carry plainly become `_`).
fn attachment(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    format!("attachment; filename=\"{plain}\"")
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        Some("yaml") => "application/yaml; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file's bytes, read on the blocking pool a chunk at a time.
fn chunks(file: std::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await;
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok(buf), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_folder_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("checkpoints/best.safetensors"), b"w").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), run.join("link")).unwrap();
        assert!(inside(&run, "checkpoints/best.safetensors").is_ok());
        for bad in [
            "../secret",
            "/etc/passwd",
            "checkpoints/../../secret",
            "link",
            "checkpoints",
            "",
        ] {
            assert!(inside(&run, bad).is_err(), "{bad}");
        }
        assert!(matches!(
            inside(&run, "nope"),
            Err(StudioError::NotFound(_))
        ));
    }
}

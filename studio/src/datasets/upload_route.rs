//! `POST /datasets/upload`: a zip of a dataset folder, streamed to a
//! temporary file (never held in memory), unpacked, checked.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::add_and_check;
use super::pages::go_to;
use super::upload::{ZipLimits, safe_name, unpack};
use crate::error::StudioError;
use crate::state::Studio;

/// The largest zip accepted (the request body).
pub const MAX_UPLOAD_BYTES: usize = 4 << 30;

pub async fn upload(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, StudioError> {
    let uploads = studio.data_dir.join("uploads");
    std::fs::create_dir_all(&uploads).map_err(|e| io(&uploads, e))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let archive = uploads.join(format!("upload-{stamp}.zip"));
    let name = receive(&mut form, &archive).await;
    let outcome = match name {
        Ok(name) => {
            let dest = uploads.join(format!("{name}-{stamp}"));
            let studio = studio.clone();
            let archive = archive.clone();
            tokio::task::spawn_blocking(move || unpack_and_check(&studio, &archive, &dest))
                .await
                .map_err(|e| StudioError::Internal(format!("the upload stopped: {e}")))?
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&archive);
    Ok(go_to(&headers, &format!("/datasets/{}", outcome?)))
}

fn unpack_and_check(studio: &Studio, archive: &Path, dest: &Path) -> Result<i64, StudioError> {
    let root = unpack(archive, dest, ZipLimits::default())?;
    let checked = add_and_check(studio, &root.to_string_lossy());
    if checked.is_err() {
        // Not a dataset after all: keep nothing of it.
        let _ = std::fs::remove_dir_all(dest);
    }
    checked
}

/// Writes the `archive` part of the form to `to`; returns a folder name
/// made from the uploaded file's name.
async fn receive(form: &mut Multipart, to: &Path) -> Result<String, StudioError> {
    let invalid = |e: axum::extract::multipart::MultipartError| {
        StudioError::Invalid(format!("the upload was cut or malformed: {e}"))
    };
    while let Some(mut field) = form.next_field().await.map_err(invalid)? {
        if field.name() != Some("archive") {
            continue;
        }
        let name = folder_name(field.file_name().unwrap_or("upload.zip"));
        let mut file = std::fs::File::create_new(to).map_err(|e| io(to, e))?;
        while let Some(chunk) = field.chunk().await.map_err(invalid)? {
            file.write_all(&chunk).map_err(|e| io(to, e))?;
        }
        return Ok(name);
    }
    Err(StudioError::Invalid(
        "no file in the form: choose a .zip of the dataset folder".into(),
    ))
}

/// A safe folder name from an uploaded file name (`flowers.zip` -> `flowers`).
fn folder_name(file_name: &str) -> String {
    let stem = file_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let stem = stem.strip_suffix(".zip").unwrap_or(stem);
    let safe = safe_name(stem);
    if safe.is_empty() {
        "upload".into()
    } else {
        safe
    }
}

fn io(path: &Path, e: std::io::Error) -> StudioError {
    StudioError::Internal(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::folder_name;

    #[test]
    fn folder_names_keep_only_safe_characters() {
        assert_eq!(folder_name("flowers.zip"), "flowers");
        assert_eq!(folder_name("../../etc/passwd"), "passwd");
        assert_eq!(folder_name("a b.zip"), "a_b");
        assert_eq!(folder_name(".zip"), "upload");
        assert_eq!(folder_name("康乃馨.zip"), "康乃馨");
    }
}

//! Datasets uploaded as zips: unpacked into the studio's folder and
//! checked; zip-slip and bombs refused with nothing kept.

use std::io::Write;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use zip::write::SimpleFileOptions;

use crate::common::{Answer, ORIGIN, TestStudio, assert_says, snapshot, two_class_dataset};

const BOUNDARY: &str = "studio-test-boundary";

/// A zip of `(name, bytes)` entries, deflated.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Every file of a folder, named `prefix/relative path`.
fn folder_entries(root: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .map(|(path, bytes)| {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (format!("{prefix}{rel}"), bytes)
        })
        .collect()
}

async fn upload(t: &TestStudio, zip: Vec<u8>) -> crate::common::Answer {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"tiny.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend(zip);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    let request = Request::post("/datasets/upload")
        .header(header::ORIGIN, ORIGIN)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("hx-request", "true");
    t.send(request, Body::from(body)).await
}

/// Nothing of a refused upload stays: no dataset, no files.
/// The upload was refused with 422 and a message containing `says`, and
/// nothing of it was kept.
fn assert_refused(t: &TestStudio, answer: &Answer, says: &str) {
    assert_says(answer, StatusCode::UNPROCESSABLE_ENTITY, says);
    assert_nothing_kept(t);
}

fn assert_nothing_kept(t: &TestStudio) {
    assert!(t.registry().datasets().unwrap().is_empty());
    let uploads = t.dir.path().join("studio/uploads");
    assert!(snapshot(&uploads).is_empty(), "{:?}", snapshot(&uploads));
}

#[tokio::test]
async fn a_zipped_dataset_folder_is_unpacked_and_checked() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let answer = upload(&t, zip_of(&folder_entries(data.path(), "tiny/"))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let target = answer.headers["hx-redirect"].to_str().unwrap().to_string();
    let page = t.get(&target).await;
    assert!(
        page.body.contains("passed") && page.body.contains("train 16 labeled"),
        "{}",
        page.body
    );
    let row = &t.registry().datasets().unwrap()[0];
    assert!(
        row.path.starts_with(t.dir.path().join("studio/uploads")),
        "{row:?}"
    );
    assert_eq!(row.name, "tiny");
}

#[tokio::test]
async fn an_entry_that_leaves_the_folder_refuses_the_whole_zip() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    for evil in [
        "../evil.txt",
        "tiny/../../evil.txt",
        "/tmp/evil-studio-test.txt",
    ] {
        let mut entries = folder_entries(data.path(), "tiny/");
        entries.push((evil.to_string(), b"gotcha".to_vec()));
        let answer = upload(&t, zip_of(&entries)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{evil}: {}",
            answer.body
        );
        // The zip writer stores an absolute name without its leading `/`,
        // which then stays inside the folder (and makes it no dataset).
        if evil.contains("..") {
            assert!(
                answer.body.contains("would leave the dataset folder"),
                "{evil}: {}",
                answer.body
            );
        }
        assert_nothing_kept(&t);
    }
    assert!(!t.dir.path().join("studio/evil.txt").exists());
    assert!(!Path::new("/tmp/evil-studio-test.txt").exists());
}

#[tokio::test]
async fn a_zip_bomb_is_refused_and_nothing_kept() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let mut entries = folder_entries(data.path(), "tiny/");
    entries.push(("tiny/images/huge.png".into(), vec![0u8; 64 << 20]));
    let answer = upload(&t, zip_of(&entries)).await;
    assert_refused(&t, &answer, "decompression bomb");
}

#[tokio::test]
async fn a_file_that_is_no_zip_or_no_dataset_is_refused() {
    let t = TestStudio::logged_in().await;
    let answer = upload(&t, b"not a zip at all".to_vec()).await;
    assert_refused(&t, &answer, "not a zip file");
    let answer = upload(
        &t,
        zip_of(&[("notes/readme.txt".into(), b"hello".to_vec())]),
    )
    .await;
    assert_refused(&t, &answer, "not a dataset folder");
}

//! Deploy: exports as `semiclass export` jobs, the package list and its
//! downloads, serving from the studio with serving's engine and tokens,
//! and the try-out page; bad requests get a 4xx and change nothing.

use axum::http::StatusCode;
use semiclass_registry::JobStatus;

use crate::common::{TestStudio, assert_says, snapshot, two_class_dataset};
use crate::evals::{multipart, post_multipart, trained_checkpoint, wait_until_ended};

fn png() -> Vec<u8> {
    let image = image::GrayImage::from_pixel(28, 28, image::Luma([220]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn bad_deploy_requests_are_refused_and_change_nothing() {
    let t = TestStudio::logged_in().await;
    let page = t.get("/deploy").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let form = [
        ("checkpoint", "/no/such.safetensors"),
        ("target", "cpu-x86_64"),
    ];
    let answer = t.post_form("/deploy/export", &form).await;
    assert_says(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/no/such.safetensors",
    );
    let form = [("checkpoint", "@best"), ("target", "tpu-v9")];
    let answer = t.post_form("/deploy/export", &form).await;
    assert_says(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown target 'tpu-v9'; one of cpu-x86_64, cuda-x86_64",
    );
    assert!(t.registry().jobs().unwrap().is_empty());

    for path in [
        "/deploy/packages/..%2F..%2Fregistry.sqlite/download",
        "/deploy/packages/nothing/download",
    ] {
        let answer = t.get(path).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.body
        );
        assert!(answer.body.contains("no package"), "{}", answer.body);
    }
    let answer = t
        .post_form("/deploy/serve", &[("package", "../../etc"), ("port", "0")])
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    let answer = t.post_form("/deploy/serve", &[("port", "0")]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert!(t.studio.serving.view().is_none());
    let answer = t.post_form("/deploy/serve/stop", &[]).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let answer = post_multipart(
        &t,
        "/deploy/try",
        multipart(&[], Some(("image", "a.png", &png()))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);

    // From another site: refused, no token made.
    let other = axum::http::Request::post("/deploy/tokens")
        .header(axum::http::header::ORIGIN, "http://evil.example")
        .header(
            axum::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    let answer = t.send(other, axum::body::Body::from("name=evil")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let answer = t.post_form("/deploy/tokens", &[("name", "  ")]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    let answer = t.post_form("/deploy/tokens/abcd1234/revoke", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    assert!(
        snapshot(&t.dir.path().join("studio"))
            .iter()
            .all(|(p, _)| !p.ends_with("serve-tokens.json"))
    );
}

#[tokio::test]
async fn a_token_is_shown_once_and_kept_hashed() {
    let t = TestStudio::logged_in().await;
    let answer = t
        .post_form("/deploy/tokens", &[("name", "mobile-app")])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let token = answer
        .body
        .split("id=\"token-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(token.starts_with("sct_"), "{token}");
    let stored = std::fs::read_to_string(t.dir.path().join("studio/serve-tokens.json")).unwrap();
    assert!(!stored.contains(&token), "the token itself is not kept");
    let store = t.studio.serving.token_store();
    let records = store.read().unwrap();
    assert_eq!(records.len(), 1);
    assert!(semiclass_serve::tokens::active_tokens(&records).verify(&token));
    let page = t.get("/deploy").await;
    assert!(page.body.contains("mobile-app") && !page.body.contains(&token));
    let id = &records[0].id;
    let answer = t
        .post_form(&format!("/deploy/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(!semiclass_serve::tokens::active_tokens(&store.read().unwrap()).verify(&token));
    // A token file others can read: the page says so, and still works.
    use std::os::unix::fs::PermissionsExt;
    let file = t.dir.path().join("studio/serve-tokens.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let page = t.get("/deploy").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("chmod 600"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_package_downloads_serves_and_answers_an_image() {
    let t = TestStudio::logged_in().await;
    let data = two_class_dataset();
    let (_dataset, checkpoint) = trained_checkpoint(&t, data.path()).await;
    let form = [
        ("checkpoint", checkpoint.to_str().unwrap()),
        ("target", "cpu-x86_64"),
    ];
    let answer = t.post_form("/deploy/export", &form).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let id: i64 = answer.headers["hx-redirect"].to_str().unwrap()["/jobs/".len()..]
        .parse()
        .unwrap();
    let row = wait_until_ended(&t, id);
    let log = std::fs::read_to_string(&row.log_path).unwrap();
    assert_eq!(row.status, JobStatus::Finished, "{log}");
    assert!(row.args.contains(&"--without-sdk".to_string()));

    let name = row
        .run_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let page = t.get("/deploy").await;
    let link = format!("/deploy/packages/{name}/download");
    assert!(page.body.contains(&link), "{}", page.body);
    let job_page = t.get(&format!("/jobs/{id}/result")).await;
    assert!(
        job_page.body.contains(&link),
        "the job links its package: {}",
        job_page.body
    );
    let zip = t.get(&link).await;
    assert_eq!(zip.status, StatusCode::OK);
    assert_eq!(zip.headers["content-type"], "application/zip");
    let package = semiclass_package::Package::open(&row.run_dir.join(format!(
        "{}-cpu-x86_64.zip",
        semiclass_manifest::checkpoint_file::read_meta(&checkpoint).unwrap().model
    )))
    .unwrap();
    assert!(page.body.contains(&package.manifest.package_id));

    let answer = t
        .post_form("/deploy/serve", &[("package", &name), ("port", "0")])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let view = t.studio.serving.view().unwrap();
    assert!(view.addr.ip().is_loopback());
    assert_eq!(view.models[0].0, package.manifest.package_id);
    let again = t
        .post_form("/deploy/serve", &[("package", &name), ("port", "0")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    let answer = post_multipart(
        &t,
        "/deploy/try",
        multipart(&[], Some(("image", "bright.png", &png()))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("latency"), "{}", answer.body);
    assert!(
        answer.body.contains("bright") && answer.body.contains("dark"),
        "{}",
        answer.body
    );
    let text = b"this is not an image";
    let answer = post_multipart(
        &t,
        "/deploy/try",
        multipart(&[], Some(("image", "notes.png", text))),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert!(answer.body.contains("the image"), "{}", answer.body);

    let answer = t.post_form("/deploy/serve/stop", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(t.studio.serving.view().is_none());
    assert!(
        std::net::TcpStream::connect(view.addr).is_err(),
        "stopped listening"
    );
}

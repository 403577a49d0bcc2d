//! The try-out page in headless Chromium (playwright-core from
//! `tests/page/node_modules`, installed by `make setup`).

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::socket::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_both_models_side_by_side_in_chromium() {
    let page_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page");
    assert!(
        page_dir.join("node_modules/playwright-core").is_dir(),
        "{}: playwright-core is missing: run `make setup` (npm ci there) and install Debian's chromium",
        page_dir.display()
    );
    let fixture = Fixture::new();
    let server = Server::start(fixture.state()).await;
    let image = fixture.dir.path().join("flower.png");
    std::fs::write(&image, png(120, 90, 4)).unwrap();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("tryout-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}/", server.addr);
    let token = fixture.token.clone();
    let (image, shot) = (image.clone(), screenshot.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&page_dir)
            .arg("tryout.mjs")
            .args([url.as_str(), token.as_str()])
            .arg(&image)
            .arg(&shot)
            .arg("3")
            .output()
            .expect("node (Debian's nodejs) on PATH")
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the page test failed:\n{log}");
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "{log}"
    );
}

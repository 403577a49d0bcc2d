//! The studio's workflow in headless Chromium (playwright-core from
//! `tests/page/node_modules`, installed by `make setup`), against a real
//! `semiclass studio` process whose jobs train for real. Screenshots of
//! every step are kept in `target/test-artifacts/studio/`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{StudioProcess, TOKEN, semiclass_binary, two_class_dataset};

#[test]
fn the_workflow_goes_from_a_dataset_to_a_served_model_in_chromium() {
    let page_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page");
    assert!(
        page_dir.join("node_modules/playwright-core").is_dir(),
        "{}: playwright-core is missing: run `make setup` (npm ci there) and install Debian's chromium",
        page_dir.display()
    );
    assert!(
        semiclass_binary().is_file(),
        "{} is not built; run `cargo build -p semiclass-trainer` first",
        semiclass_binary().display()
    );
    let home = tempfile::tempdir().unwrap();
    let data = two_class_dataset();
    // "evaluate on test": the test list is the val images.
    std::fs::copy(data.path().join("val.txt"), data.path().join("test.txt")).unwrap();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts/studio");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let studio = StudioProcess::start(&home.path().join("registry.sqlite"));
    let started = Instant::now();
    let output = Command::new("node")
        .current_dir(&page_dir)
        .arg("flow.mjs")
        .args([&studio.url, TOKEN])
        .arg(data.path())
        .arg(&artifacts)
        .output()
        .expect("node (Debian's nodejs) on PATH");
    let took = started.elapsed();
    drop(studio);
    let log = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the studio's flow failed:\n{log}");
    assert!(
        took < Duration::from_secs(120),
        "the flow took {took:?}, more than 2 minutes:\n{log}"
    );
    let shots = std::fs::read_dir(&artifacts).unwrap().count();
    assert!(
        shots >= 12,
        "{shots} screenshots in {}",
        artifacts.display()
    );
    println!("{log}flow: {took:?}");
}

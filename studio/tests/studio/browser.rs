//! The studio's workflow in headless Chromium (playwright-core from
//! `tests/page/node_modules`, installed by `make setup`), against a real
//! `semiclass studio` process whose jobs train for real. Screenshots of
//! every step are kept in `target/test-artifacts/studio/`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TOKEN, semiclass_binary, two_class_dataset};

/// `semiclass studio` on a free loopback port, stopped (SIGTERM) when dropped.
struct StudioProcess {
    child: Child,
    url: String,
}

impl StudioProcess {
    fn start(registry: &Path) -> StudioProcess {
        let mut child = Command::new(semiclass_binary())
            .args(["--registry", registry.to_str().unwrap()])
            .args(["studio", "--listen", "127.0.0.1:0"])
            .env("SEMICLASS_STUDIO_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the semiclass binary runs");
        let stdout = child.stdout.take().unwrap();
        // Read to its end: a closed pipe would fail the studio's next print.
        let (first, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = first.send(line);
            }
        });
        // "semiclass studio: http://127.0.0.1:PORT/ (log in with ...)"
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("the studio did not say where it listens: {line:?}"))
            .to_string();
        StudioProcess { child, url }
    }
}

impl Drop for StudioProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

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

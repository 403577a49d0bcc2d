//! A studio on a temporary registry, a logged-in client, tiny datasets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use image::{DynamicImage, GrayImage, Luma};
use semiclass_registry::Registry;
use semiclass_studio::{Studio, StudioOptions};
use tower::ServiceExt;

pub const TOKEN: &str = "test-token-0123456789-abcdefghij";
pub const HOST: &str = "127.0.0.1:8765";
pub const ORIGIN: &str = "http://127.0.0.1:8765";

/// An answer, its body as text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub struct TestStudio {
    pub dir: tempfile::TempDir,
    pub studio: Arc<Studio>,
    app: Router,
    pub cookie: Option<String>,
}

impl TestStudio {
    /// A studio whose jobs run the workspace's `semiclass` binary.
    pub fn new() -> TestStudio {
        let dir = tempfile::tempdir().unwrap();
        let options = StudioOptions {
            registry: dir.path().join("registry.sqlite"),
            program: semiclass_binary(),
            max_running: 1,
        };
        let studio = Studio::new(&options, TOKEN).unwrap();
        let app = semiclass_studio::app(studio.clone());
        TestStudio {
            dir,
            studio,
            app,
            cookie: None,
        }
    }

    /// The same studio, logged in.
    pub async fn logged_in() -> TestStudio {
        let mut t = TestStudio::new();
        let answer = t
            .send(Request::get(format!("/?token={TOKEN}")), Body::empty())
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        t.cookie = Some(cookie.split(';').next().unwrap().to_string());
        t
    }

    pub fn registry(&self) -> Registry {
        Registry::open(&self.dir.path().join("registry.sqlite")).unwrap()
    }

    /// Sends a request with the Host of the studio and the session cookie.
    pub async fn send(&self, builder: axum::http::request::Builder, body: Body) -> Answer {
        let mut builder = builder.header(header::HOST, HOST);
        if let Some(cookie) = &self.cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path), Body::empty()).await
    }

    /// A form sent by htmx from the studio's own page.
    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let body = form_body(pairs);
        let builder = Request::post(path)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("hx-request", "true");
        self.send(builder, Body::from(body)).await
    }
}

pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `target/<profile>/semiclass`, next to this test's own folder.
pub fn semiclass_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("semiclass")
}

/// Dark images are class 0, bright ones class 1: learnable in a few steps
/// (as tests/e2e's two-class dataset).
pub fn two_class_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("images")).unwrap();
    let list = |kind: &str, count: usize, labeled: bool| -> String {
        (0..count)
            .map(|i| {
                let class = i % 2;
                let rel = format!("images/{kind}{i}.png");
                let level = if class == 0 { 30u8 } else { 220 };
                let img = GrayImage::from_fn(28, 28, |x, y| {
                    Luma([level.wrapping_add(((x * 7 + y * 3 + i as u32) % 20) as u8)])
                });
                DynamicImage::ImageLuma8(img).save(root.join(&rel)).unwrap();
                if labeled {
                    format!("{rel} {class}\n")
                } else {
                    format!("{rel}\n")
                }
            })
            .collect()
    };
    let train = list("t", 16, true);
    let val = list("v", 8, true);
    let unlabeled = list("u", 16, false);
    std::fs::write(root.join("label.txt"), "0 dark\n1 bright\n").unwrap();
    std::fs::write(root.join("train.txt"), train).unwrap();
    std::fs::write(root.join("val.txt"), val).unwrap();
    std::fs::write(root.join("train_unlabeled.txt"), unlabeled).unwrap();
    dir
}

/// Every file under `root`, with its bytes (to see that nothing changed).
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Adds the dataset at `root` through the page; returns its id.
pub async fn add_dataset(t: &TestStudio, root: &Path) -> i64 {
    let answer = t
        .post_form("/datasets", &[("path", root.to_str().unwrap())])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let target = answer.headers["hx-redirect"].to_str().unwrap();
    target.strip_prefix("/datasets/").unwrap().parse().unwrap()
}

/// `semiclass studio` on a free loopback port, stopped (SIGTERM) when dropped.
pub struct StudioProcess {
    child: Child,
    pub url: String,
}

impl StudioProcess {
    pub fn start(registry: &Path) -> StudioProcess {
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

impl StudioProcess {
    /// Kills it with SIGKILL: no chance to stop its jobs itself.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for StudioProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // killed and reaped already
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The answer has `status` and its body says `says` (the reason a user
/// reads).
pub fn assert_says(answer: &Answer, status: StatusCode, says: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body.contains(says), "{says}: {}", answer.body);
}

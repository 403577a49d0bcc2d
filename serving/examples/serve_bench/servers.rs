//! The servers under test as child processes: (c) semiclass-serve and (b)
//! the FastAPI + uvicorn server of bench/python_server.py.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A server process, stopped when dropped.
pub struct Spawned {
    child: Child,
    pub addr: SocketAddr,
}

impl Spawned {
    /// The process and all its children: what the server costs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_address() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// How semiclass-serve runs: its sessions and threads, batching, cap.
pub struct ServeRun<'a> {
    pub binary: &'a Path,
    pub package: &'a Path,
    pub tokens: &'a Path,
    pub sessions: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub max_wait_ms: u64,
    pub cap: usize,
}

pub fn semiclass_serve(run: &ServeRun) -> Result<Spawned> {
    let addr = free_address()?;
    let child = Command::new(run.binary)
        .arg("--tokens")
        .arg(run.tokens)
        .arg("serve")
        .arg("--package")
        .arg(run.package)
        .args(["--listen", &addr.to_string(), "--log", "warn"])
        .args(["--sessions", &run.sessions.to_string()])
        .args(["--threads", &run.threads.to_string()])
        .args(["--max-batch", &run.max_batch.to_string()])
        .args(["--max-wait-ms", &run.max_wait_ms.to_string()])
        .args(["--max-concurrent", &run.cap.to_string()])
        .args(["--queue", &run.cap.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| run.binary.display().to_string())?;
    listening(Spawned { child, addr })
}

/// How the Python server runs: its interpreter (a venv with FastAPI,
/// uvicorn, Pillow, numpy, onnxruntime), workers and ORT threads.
pub struct PythonRun<'a> {
    pub python: &'a Path,
    pub onnx: &'a Path,
    pub size: u32,
    pub workers: usize,
    pub threads: usize,
    pub token: &'a str,
}

pub fn python_server(run: &PythonRun) -> Result<Spawned> {
    let addr = free_address()?;
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench");
    let child = Command::new(run.python)
        .args(["-m", "uvicorn", "python_server:app", "--app-dir"])
        .arg(&bench_dir)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--workers", &run.workers.to_string()])
        .args(["--log-level", "warning", "--no-access-log"])
        .env("BENCH_ONNX", run.onnx)
        .env("BENCH_SIZE", run.size.to_string())
        .env("BENCH_THREADS", run.threads.to_string())
        .env("BENCH_TOKEN", run.token)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| run.python.display().to_string())?;
    listening(Spawned { child, addr })
}

fn listening(server: Spawned) -> Result<Spawned> {
    let started = Instant::now();
    while std::net::TcpStream::connect(server.addr).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not start listening on {}", server.addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

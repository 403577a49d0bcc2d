//! The serving benchmark behind `bench/serve-throughput.sh`: the same model
//! and threads measured side by side in one run, first as a tight loop
//! calling ONNX Runtime directly, then through `semiclass-serve` (HTTP,
//! auth, decoding, preprocessing, micro-batching) at several concurrencies,
//! then at 4x the concurrency cap to check it refuses with 429/503 only.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use semiclass_serve::engine::{Backend, OrtBackend, init_runtime};
use semiclass_serve::package::{handmade_manifest, seal_folder};
use semiclass_serve::tokens::TokenStore;

#[derive(Parser)]
struct Args {
    /// The ONNX model (input `input` [N,3,S,S], output `logits`).
    #[arg(long)]
    onnx: PathBuf,
    #[arg(long, default_value = "lcnet_100")]
    arch: String,
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// The image every request sends.
    #[arg(long)]
    image: PathBuf,
    /// The semiclass-serve binary.
    #[arg(long)]
    server: PathBuf,
    /// Scratch folder (package, tokens).
    #[arg(long)]
    work: PathBuf,
    /// ONNX Runtime threads in all, for the loop and the server alike: the
    /// loop runs one session on all of them, the server `--sessions`
    /// sessions sharing them.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Sessions of the server.
    #[arg(long, default_value_t = 2)]
    sessions: usize,
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    #[arg(long, default_value_t = 2)]
    max_wait_ms: u64,
    /// Seconds measured per setting.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Rounds of every setting; the best round of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The concurrency cap of the overload run (driven at 4x).
    #[arg(long, default_value_t = 16)]
    cap: usize,
}

/// What one setting measured.
#[derive(Debug, Default)]
struct Measure {
    images_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    statuses: std::collections::BTreeMap<u16, usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let package = write_package(&args)?;
    let tokens = args.work.join("tokens.json");
    let _ = std::fs::remove_file(&tokens);
    let (_, token) = TokenStore::new(&tokens).create("bench", 0)?;
    let image = std::fs::read(&args.image).with_context(|| args.image.display().to_string())?;
    println!(
        "model {} at {} px, {} ONNX Runtime threads (server: {} sessions), image {} ({} bytes), best of {} rounds",
        args.arch,
        args.size,
        args.threads,
        args.sessions,
        args.image.display(),
        image.len(),
        args.rounds
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut direct = DirectLoop::new(&args, &image)?;
    let mut best = Best::default();
    {
        let server = Server::start(&args, &package, &tokens, 256)?;
        // Alternating the sides within each round spreads the noise of a
        // shared machine over both.
        for _ in 0..args.rounds {
            for (sessions, batch) in direct_settings(&args) {
                best.keep(
                    &direct_name(sessions, batch),
                    direct.run(&args, sessions, batch)?,
                );
            }
            for &c in &args.concurrency {
                let m = runtime.block_on(load(server.addr, &args, &token, &image, c))?;
                best.keep(&format!("semiclass-serve, concurrency {c}"), m);
            }
        }
        let metrics = runtime.block_on(get_metrics(server.addr, &token))?;
        let value = |name: &str| -> f64 {
            let line = metrics.lines().find(|l| l.starts_with(name));
            line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        };
        let images = value("semiclass_images_total");
        println!(
            "server, all rounds: {images} images in {} batches, ONNX Runtime {:.2} ms per image",
            value("semiclass_batches_total"),
            value("semiclass_inference_seconds_total") * 1e3 / images
        );
    }
    let overload = {
        let server = Server::start(&args, &package, &tokens, args.cap)?;
        runtime.block_on(load(server.addr, &args, &token, &image, 4 * args.cap))?
    };
    println!("| setting | images/s | p50 ms | p99 ms | answers |");
    println!("|---|---:|---:|---:|---|");
    for (name, m) in &best.0 {
        row(name, m);
    }
    row(
        &format!(
            "semiclass-serve, cap {} at concurrency {}",
            args.cap,
            4 * args.cap
        ),
        &overload,
    );
    summary(&args, &best, &overload)
}

/// The direct loops measured: (sessions, batch).
fn direct_settings(args: &Args) -> Vec<(usize, usize)> {
    let mut settings = vec![(1, 1), (1, args.max_batch)];
    if args.sessions > 1 {
        settings.push((args.sessions, 1));
    }
    settings
}

fn direct_name(sessions: usize, batch: usize) -> String {
    match sessions {
        1 => format!("direct ORT loop, 1 session, batch {batch}"),
        n => format!("direct ORT loops, {n} sessions in parallel, batch {batch}"),
    }
}

/// The best round of each setting, in the order first measured.
#[derive(Default)]
struct Best(Vec<(String, Measure)>);

impl Best {
    fn keep(&mut self, name: &str, m: Measure) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) if old.images_per_s >= m.images_per_s => {}
            Some((_, old)) => *old = m,
            None => self.0.push((name.to_string(), m)),
        }
    }

    fn images_per_s(&self, name: &str) -> f64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, m)| m.images_per_s)
    }
}

fn row(name: &str, m: &Measure) {
    let answers: Vec<String> = m
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {} |",
        m.images_per_s,
        m.p50_ms,
        m.p99_ms,
        answers.join(", ")
    );
}

fn summary(args: &Args, best: &Best, overload: &Measure) -> Result<()> {
    println!();
    let served = best.images_per_s("semiclass-serve, concurrency 16");
    for (sessions, batch) in direct_settings(args) {
        let name = direct_name(sessions, batch);
        println!(
            "concurrency 16 / {name}: {:.2} (goal >= 0.85)",
            served / best.images_per_s(&name)
        );
    }
    let refused: usize = overload
        .statuses
        .iter()
        .filter(|(s, _)| matches!(s, 429 | 503))
        .map(|(_, n)| n)
        .sum();
    let errors: usize = overload
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    println!("at 4x the cap: {refused} answers 429/503, {errors} other 5xx");
    if errors > 0 || refused == 0 {
        bail!("the overload run should refuse with 429/503 and never answer another 5xx");
    }
    Ok(())
}

/// Tight loops calling ONNX Runtime on the same preprocessed image,
/// `batch` copies per run: one session on all the threads, or several
/// sessions sharing them, one loop each, in parallel.
struct DirectLoop {
    model: Vec<u8>,
    tensor: Vec<f32>,
    /// (sessions, batch) -> the sessions, kept between rounds.
    pools: std::collections::BTreeMap<(usize, usize), Vec<OrtBackend>>,
}

impl DirectLoop {
    fn new(args: &Args, image: &[u8]) -> Result<DirectLoop> {
        let library = std::env::var_os("ORT_DYLIB_PATH").context("set ORT_DYLIB_PATH")?;
        init_runtime(Path::new(&library))?;
        let spec =
            PreprocessSpec::for_input(args.size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        Ok(DirectLoop {
            model: std::fs::read(&args.onnx)?,
            tensor: preprocess_bytes(image, DecodeLimits::default(), &spec)?.data,
            pools: Default::default(),
        })
    }

    fn run(&mut self, args: &Args, sessions: usize, batch: usize) -> Result<Measure> {
        let side = args.size as usize;
        let threads = (args.threads / sessions).max(1);
        let pool = match self.pools.entry((sessions, batch)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let names = ("input", "logits");
                let new = (0..sessions)
                    .map(|_| OrtBackend::new(&self.model, threads, names, [3, side, side]))
                    .collect::<Result<Vec<_>, _>>()?;
                e.insert(new)
            }
        };
        let input: Vec<f32> = (0..batch)
            .flat_map(|_| self.tensor.iter().copied())
            .collect();
        let started = Instant::now();
        let per_session: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|scope| {
            let loops: Vec<_> = pool
                .iter_mut()
                .map(|backend| {
                    let input = &input;
                    scope.spawn(move || tight_loop(backend, input, batch, args.seconds))
                })
                .collect();
            loops
                .into_iter()
                .map(|h| h.join().expect("a loop panicked"))
                .collect()
        });
        let took = started.elapsed();
        let mut latencies = Vec::new();
        for one in per_session {
            latencies.extend(one.map_err(anyhow::Error::msg)?);
        }
        let images = latencies.len() * batch;
        Ok(measure(images, took, latencies, [(200, images)].into()))
    }
}

/// One session run back to back for `seconds` after a short warm-up.
fn tight_loop(
    backend: &mut OrtBackend,
    input: &[f32],
    batch: usize,
    seconds: f64,
) -> Result<Vec<Duration>, String> {
    for _ in 0..3 {
        backend.run(input.to_vec(), batch)?;
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        backend.run(input.to_vec(), batch)?;
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

fn measure(
    images: usize,
    took: Duration,
    mut latencies: Vec<Duration>,
    statuses: std::collections::BTreeMap<u16, usize>,
) -> Measure {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Measure {
        images_per_s: images as f64 / took.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        statuses,
    }
}

/// `clients` closed-loop clients, one keep-alive connection each, sending
/// the image as a raw body for `args.seconds` (after one second of warm-up);
/// a refused client backs off for [`BACKOFF`].
async fn load(
    addr: SocketAddr,
    args: &Args,
    token: &str,
    image: &[u8],
    clients: usize,
) -> Result<Measure> {
    let uri = format!("/v1/models/bench-{}/predict?topk=5", args.arch);
    let warmup = Instant::now() + Duration::from_secs(1);
    let deadline = warmup + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (uri, auth, body) = (
            uri.clone(),
            format!("Bearer {token}"),
            Bytes::copy_from_slice(image),
        );
        tasks.push(tokio::spawn(async move {
            client(addr, uri, auth, body, warmup, deadline).await
        }));
    }
    let (mut latencies, mut statuses) = (Vec::new(), std::collections::BTreeMap::new());
    for task in tasks {
        for (status, latency) in task.await?? {
            *statuses.entry(status).or_insert(0) += 1;
            if status == 200 {
                latencies.push(latency);
            }
        }
    }
    let ok = latencies.len();
    Ok(measure(ok, deadline - warmup, latencies, statuses))
}

async fn client(
    addr: SocketAddr,
    uri: String,
    auth: String,
    body: Bytes,
    warmup: Instant,
    deadline: Instant,
) -> Result<Vec<(u16, Duration)>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut answers = Vec::new();
    loop {
        let started = Instant::now();
        if started >= deadline {
            return Ok(answers);
        }
        let request = Request::post(&uri)
            .header("host", addr.to_string())
            .header("authorization", &auth)
            .header("content-type", "image/jpeg")
            .body(Full::new(body.clone()))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        let finished = Instant::now();
        if started >= warmup && finished <= deadline {
            answers.push((status, finished - started));
        }
        if status == 429 || status == 503 {
            // The server says `Retry-After: 1`; a client hammering at once
            // would measure only how fast refusals are.
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// The server's `/metrics` text.
async fn get_metrics(addr: SocketAddr, token: &str) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get("/metrics")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// How long a refused client waits before its next request.
const BACKOFF: Duration = Duration::from_millis(100);

/// The server as a child process, stopped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &Args, package: &Path, tokens: &Path, cap: usize) -> Result<Server> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&args.server)
            .arg("--tokens")
            .arg(tokens)
            .arg("serve")
            .arg("--package")
            .arg(package)
            .args(["--listen", &addr.to_string(), "--log", "warn"])
            .args([
                "--sessions",
                &args.sessions.to_string(),
                "--threads",
                &(args.threads / args.sessions).max(1).to_string(),
                "--max-batch",
                &args.max_batch.to_string(),
            ])
            .args(["--max-wait-ms", &args.max_wait_ms.to_string()])
            .args([
                "--max-concurrent",
                &cap.to_string(),
                "--queue",
                &cap.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| args.server.display().to_string())?;
        let server = Server { child, addr };
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A package folder around the ONNX model: 1000 classes, ImageNet
/// normalisation, the timm eval crop.
fn write_package(args: &Args) -> Result<PathBuf> {
    let dir = args.work.join("package");
    std::fs::create_dir_all(dir.join("model"))?;
    std::fs::copy(&args.onnx, dir.join("model/model.onnx"))?;
    let classes = (0..1000).map(|i| format!("class {i}")).collect();
    let id = format!("bench-{}", args.arch);
    seal_folder(
        &dir,
        handmade_manifest(&id, &args.arch, Role::Small, classes, args.size),
    )?;
    Ok(dir)
}

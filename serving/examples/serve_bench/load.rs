//! The load generator: closed-loop clients on keep-alive connections, each
//! sending the image as a raw body. It runs in the bench process on one
//! thread; its own CPU is measured and reported next to the server's.
//!
//! A request still waiting at the end of the window counts in the
//! latencies with the time it had waited (a lower bound): leaving it out
//! would report the latency of the requests a server chose to serve, and a
//! server that starves some connections would look fast at the tail. The
//! window ends only once every such request is answered, so that no side
//! measures while another still works off its queue.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::cpu;
use crate::measure::{Measure, Window};

/// Where and what the clients send.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The server's process id: its CPU (and its children's) is measured.
    pub pid: u32,
    pub uri: String,
    pub token: String,
    pub image: Bytes,
}

/// `clients` clients for `seconds` after one second of warm-up; a refused
/// client backs off for [`BACKOFF`].
pub async fn load(target: &Target, clients: usize, seconds: f64, cores: usize) -> Result<Measure> {
    let warmup = Instant::now() + Duration::from_secs(1);
    let deadline = warmup + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(target.clone(), warmup, deadline)))
        .collect();
    tokio::time::sleep_until(warmup.into()).await;
    let at_warmup = (cpu::tree_seconds(target.pid), cpu::own_seconds());
    tokio::time::sleep_until(deadline.into()).await;
    let cpu_seconds = cpu::tree_seconds(target.pid) - at_warmup.0;
    let generator_seconds = cpu::own_seconds() - at_warmup.1;
    let (mut latencies, mut unfinished, mut statuses) = (Vec::new(), Vec::new(), BTreeMap::new());
    for task in tasks {
        let log = task.await??;
        for (status, latency) in log.answers {
            *statuses.entry(status).or_insert(0) += 1;
            if status == 200 {
                latencies.push(latency);
            }
        }
        unfinished.extend(log.unfinished);
    }
    Ok(Window {
        took: deadline - warmup,
        latencies,
        unfinished,
        statuses,
        cpu_seconds,
        generator_seconds: Some(generator_seconds),
    }
    .measure(cores))
}

/// Waits until the server answers a prediction with 200 (the Python
/// server's workers start after it listens).
pub async fn ready(target: &Target) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = match connect(target).await {
            Ok(mut sender) => predict(&mut sender, target).await.ok(),
            Err(_) => None,
        };
        if status == Some(200) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{} never answered a prediction with 200", target.addr);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive connection to the server.
async fn connect(target: &Target) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One prediction: its status, once the whole answer arrived.
async fn predict(sender: &mut Sender, target: &Target) -> Result<u16> {
    let request = Request::post(&target.uri)
        .header("host", target.addr.to_string())
        .header("authorization", format!("Bearer {}", target.token))
        .header("content-type", "image/jpeg")
        .body(Full::new(target.image.clone()))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// What one client saw in the window: each answer's status and latency,
/// and how long its last request had waited if unanswered at the end.
struct ClientLog {
    answers: Vec<(u16, Duration)>,
    unfinished: Option<Duration>,
}

async fn client(target: Target, warmup: Instant, deadline: Instant) -> Result<ClientLog> {
    let mut sender = connect(&target).await?;
    let mut answers = Vec::new();
    loop {
        let started = Instant::now();
        if started >= deadline {
            return Ok(ClientLog {
                answers,
                unfinished: None,
            });
        }
        // A server may close a keep-alive connection (after a refusal, at
        // its connection cap): reconnect, as a real client does, rather
        // than send on a dead one ("connection was not ready").
        if sender.ready().await.is_err() {
            sender = connect(&target).await?;
        }
        let request = predict(&mut sender, &target);
        tokio::pin!(request);
        let Ok(status) = tokio::time::timeout_at(deadline.into(), &mut request).await else {
            // Waited for all the same: a request dropped here would leave
            // a server that does not cancel abandoned work (uvicorn) busy
            // into the next side's window.
            let _ = request.await;
            return Ok(ClientLog {
                answers,
                unfinished: Some(deadline - started),
            });
        };
        let status = status?;
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

/// How long a refused client waits before its next request.
const BACKOFF: Duration = Duration::from_millis(100);

/// The server's `/metrics` text.
pub async fn metrics(target: &Target) -> Result<String> {
    let mut sender = connect(target).await?;
    let request = Request::get("/metrics")
        .header("host", target.addr.to_string())
        .header("authorization", format!("Bearer {}", target.token))
        .body(Full::new(Bytes::new()))?;
    sender.ready().await?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

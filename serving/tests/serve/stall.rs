//! One client must not stall the server for the others: slow activation
//! bodies, a client that sends decompression work and hangs up, a flood of
//! half-sent connections beyond the open-file limit.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;

use crate::common::*;
use crate::socket::{Running, Server, binary, listening_address};

/// Opens a connection and sends `head` and nothing more; `None` when the
/// server's backlog is full.
fn half_sent(addr: SocketAddr, head: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    Some(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_activation_bodies_do_not_stall_predictions() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    fixture.add_issuer(&mut config);
    config.limits.body_timeout = Duration::from_secs(3);
    let (cap, queue) = (config.limits.max_concurrent, config.limits.max_queue);
    let state = Arc::new(semiclass_serve::AppState::load(&config).unwrap());
    let server = Server::start(state).await;
    // More slow activations than the predictions' slots and queue together:
    // headers, then a body that never comes.
    let head = "POST /v1/activate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"serial\"";
    let flood: Vec<TcpStream> = (0..cap + queue + 72)
        .filter_map(|_| half_sent(server.addr, head))
        .collect();
    assert!(flood.len() > cap + queue, "only {} connected", flood.len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let auth = fixture.bearer();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "image/png"),
    ];
    let path = format!("/v1/models/{}/predict", fixture.small_id());
    for i in 0..10 {
        let started = Instant::now();
        let (status, body) = server
            .send(Method::POST, &path, &headers, png(32, 32, i))
            .await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(
            took < Duration::from_secs(1),
            "prediction {i} took {took:?}"
        );
    }
    // The slow clients are answered 408 once the body timeout passes.
    let mut slow = flood.into_iter().next().unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

/// An RGB PNG of `side` x `side` zeros: a small file whose cost is nearly
/// all inflating (no colour conversion after it), which a stop interrupts.
fn heavy_png(side: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let pixels = vec![0u8; side as usize * side as usize * 3];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// The value of a series (`name` and `labels`) in `/metrics`.
async fn metric(server: &Server, fixture: &Fixture, series: &str, labels: &[(&str, &str)]) -> f64 {
    let auth = fixture.bearer();
    let (_, body) = server
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    let (samples, _) = parse_exposition(&String::from_utf8_lossy(&body));
    sample(&samples, series, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_stops_its_decodes() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.decode_threads = 1;
    config.limits.max_pixels = 16_000_000;
    config.limits.max_request_pixels = 200_000_000;
    config.limits.max_body_bytes = 8 << 20;
    let state = Arc::new(semiclass_serve::AppState::load(&config).unwrap());
    let server = Server::start(state).await;
    let heavy = heavy_png(4000);
    // What one image costs here and now: the machine may be busy, so the
    // bounds below are in images, not in seconds.
    let one_image = {
        let (heavy, spec) = (heavy.clone(), fixture.weights[fixture.large_id()].1.clone());
        let limits = semiclass_preprocess::DecodeLimits::default();
        let timed = move || {
            let started = Instant::now();
            semiclass_preprocess::preprocess_bytes(&heavy, limits, &spec).unwrap();
            started.elapsed()
        };
        tokio::task::spawn_blocking(timed).await.unwrap()
    };
    const IMAGES: u32 = 8;
    // One decode at a time: about IMAGES times that much work.
    let (content_type, body) = multipart(&vec![heavy; IMAGES as usize]);
    let (auth, large) = (fixture.bearer(), fixture.large_id());
    let head = format!(
        "POST /v1/models/{large}/predict HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut bomb = half_sent(server.addr, &head).unwrap();
    bomb.write_all(&body).unwrap();
    let sent = Instant::now();
    while metric(&server, &fixture, "semiclass_images_decoding", &[]).await == 0.0 {
        assert!(sent.elapsed() < 20 * one_image, "the decodes never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Into the first image's decode, the other seven waiting for the permit.
    tokio::time::sleep(one_image / 2).await;
    drop(bomb);
    let hung_up = Instant::now();
    let mut decoding = f64::MAX;
    while decoding > 0.0 && hung_up.elapsed() < IMAGES * one_image + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        decoding = metric(&server, &fixture, "semiclass_images_decoding", &[]).await;
    }
    let stopped_after = hung_up.elapsed();
    assert_eq!(decoding, 0.0, "still decoding after {stopped_after:?}");
    // Without the stop, about seven and a half images' work was left; with
    // it, at most the rest of the image being decoded (its resize cannot be
    // stopped) and the time to notice the hang-up.
    assert!(
        stopped_after < 3 * one_image,
        "decoding went on for {stopped_after:?} after the client left ({one_image:?} an image)"
    );
    // Every image the client did not wait for counts: at least the ones
    // that never started.
    let stopped = metric(&server, &fixture, "semiclass_decodes_stopped_total", &[]).await;
    assert!(stopped >= 4.0, "{stopped} images counted as stopped");
    let gone = [("route", "/v1/models/{id}/predict"), ("status", "499")];
    assert_eq!(
        metric(&server, &fixture, "semiclass_http_requests_total", &gone).await,
        1.0,
        "not counted as gone"
    );
}

#[test]
fn a_connection_flood_beyond_the_open_file_limit_does_not_stop_the_probes() {
    let fixture = Fixture::new();
    let tokens = fixture.dir.path().join("flood-tokens.json");
    // The server runs with 256 open files at most; the flood is 1,100
    // connections that send half a request head and wait.
    let server = binary();
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(server.get_program())
        .args(["--tokens", tokens.to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--header-timeout-ms", "1000"])
        .arg("--package")
        .arg(&fixture.small)
        .envs(server.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stderr(Stdio::piped());
    let mut child = Running(command.spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listening_address(&mut stderr);
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    let head = "GET /healthz HTTP/1.1\r\nhost: x\r\n";
    let flooding = Instant::now();
    let flood: Vec<TcpStream> = (0..1100)
        .map_while(|_| {
            (flooding.elapsed() < Duration::from_secs(10)).then(|| half_sent(addr, head))
        })
        .flatten()
        .collect();
    // Beyond the server's open-file limit (before the fix, the listen
    // queue filled up and later connections timed out).
    assert!(flood.len() > 300, "only {} connected", flood.len());
    // The probe in a thread: the test fails after 25 s, whatever it waits on.
    let started = Instant::now();
    let (sender, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let probe = || -> std::io::Result<String> {
            let mut probe = TcpStream::connect_timeout(&addr, Duration::from_secs(25))?;
            probe.set_read_timeout(Some(Duration::from_secs(25)))?;
            probe.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
            let mut answer = String::new();
            probe.read_to_string(&mut answer)?;
            Ok(answer)
        };
        let _ = sender.send(probe());
    });
    let answer = answer.recv_timeout(Duration::from_secs(25));
    let took = started.elapsed();
    let answer = match answer {
        Ok(Ok(answer)) => answer,
        other => panic!("no answer to the probe after {took:?}: {other:?}"),
    };
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "probe after {took:?}: {answer:?}"
    );
    drop(flood);
    drop(child);
    let log = log.join().unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
}

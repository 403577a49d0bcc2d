//! The server on a real socket: the auth matrix, bad inputs, overload, a
//! revocation while serving, and the binary itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use semiclass_serve::AppState;
use semiclass_serve::serve::serve;
use semiclass_serve::tokens::TokenStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::common::*;

/// A server on 127.0.0.1 with a free port, stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// The server of a child process listening at `addr`.
    pub fn at(addr: SocketAddr) -> Server {
        Server {
            addr,
            _stop: oneshot::channel().0,
        }
    }

    pub async fn start(state: Arc<AppState>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Server { addr, _stop: stop }
    }

    /// One request on a fresh connection: (status, body).
    pub async fn call<B>(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> (u16, Bytes)
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    /// A POST head declaring `length` body bytes, sent without the body;
    /// (status, body) of the answer.
    pub async fn declare_only(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        length: usize,
    ) -> (u16, Bytes) {
        use std::io::{Read, Write};
        let addr = self.addr;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\nconnection: close\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            let mut answer = Vec::new();
            // The server closes after answering; a timeout keeps what came.
            let _ = stream.read_to_end(&mut answer);
            answer
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, Bytes::from(body))
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        self.call(method, path, headers, Full::new(Bytes::from(body)))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_matrix_over_a_socket() {
    let fixture = Fixture::new();
    let small_id = fixture.small_id();
    let server = Server::start(fixture.state()).await;
    let image = png(32, 32, 5);
    let (wrong, revoked, good) = (
        format!("Bearer sct_00000000_{}", "A".repeat(43)),
        format!("Bearer {}", fixture.revoked_token),
        fixture.bearer(),
    );
    let (_, document) = server
        .send(
            Method::GET,
            "/openapi.json",
            &[("authorization", &good)],
            Vec::new(),
        )
        .await;
    let routes = documented_routes(&serde_json::from_slice(&document).unwrap());
    let mut refusals = Vec::new();
    for (method, path, guarded) in routes {
        let path = concrete(&path, small_id);
        for auth in [
            None,
            Some("Bearer "),
            Some(wrong.as_str()),
            Some(revoked.as_str()),
            Some(good.as_str()),
        ] {
            // The Open Inference Protocol takes its images inside a JSON request.
            let (content_type, request) = if path.ends_with("/infer") {
                ("application/json", v2_request(&image))
            } else {
                ("image/png", image.clone())
            };
            let mut headers = vec![("content-type", content_type)];
            headers.extend(auth.map(|a| ("authorization", a)));
            let (status, body) = server.send(method.clone(), &path, &headers, request).await;
            match (guarded, auth == Some(good.as_str())) {
                (true, false) => {
                    assert_eq!(status, 401, "{method} {path} {auth:?}");
                    refusals.push(body);
                }
                _ => assert_eq!(
                    status,
                    200,
                    "{method} {path} {auth:?}: {}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    }
    assert!(
        refusals.windows(2).all(|w| w[0] == w[1]),
        "401 answers differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_over_a_socket_get_4xx_and_the_server_goes_on() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let server = Server::start(fixture.state()).await;
    let auth = fixture.bearer();
    let path = format!("/v1/models/{large_id}/predict");
    let png_headers = [
        ("authorization", auth.as_str()),
        ("content-type", "image/png"),
    ];
    // Declared too large: refused before the body is read. Only the head is
    // sent: a client still writing the body when the server answers and
    // closes would race with the answer (a broken pipe on some runs).
    let (status, body) = server
        .declare_only(&path, &png_headers, (1 << 20) + 1)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "body_too_large")
    );
    // Chunked, no length: refused while reading. The client is still
    // sending (6.4 MB, more than the sockets buffer) when the server
    // refuses at 1 MiB: it gets the 413 only because the server reads the
    // rest before answering, not a broken pipe.
    let (status, body) = server
        .call(Method::POST, &path, &png_headers, Chunks(100))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "body_too_large")
    );
    let (status, body) = server
        .send(Method::POST, &path, &png_headers, png_bomb(60_000, 60_000))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "too_many_pixels")
    );
    let (status, body) = server
        .send(
            Method::POST,
            &path,
            &png_headers,
            b"GIF89a garbage".to_vec(),
        )
        .await;
    assert_eq!((status, error_code(&body).as_str()), (422, "bad_image"));
    // No pixels at all: a clear 422, not a panic (and a 500) in the resize.
    let (status, body) = server
        .send(Method::POST, &path, &png_headers, zero_gif())
        .await;
    assert_eq!((status, error_code(&body).as_str()), (422, "bad_image"));
    assert!(
        String::from_utf8_lossy(&body).contains("no pixels (0x0)"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let xml = [
        ("authorization", auth.as_str()),
        ("content-type", "application/xml"),
    ];
    let (status, body) = server.send(Method::POST, &path, &xml, png(8, 8, 0)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (415, "unsupported_media_type")
    );
    let (status, _) = server
        .send(Method::POST, &path, &png_headers, png(50, 40, 2))
        .await;
    assert_eq!(status, 200);
}

/// A body of `0` chunks of 64 KiB sent without a length (chunked).
struct Chunks(usize);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![1u8; 64 << 10])))))
    }
}

/// A client that writes its whole chunked body before it reads (as curl
/// does for an upload) gets the 413 of a body that outgrew the limit, not a
/// reset connection: the server reads the rest of the body (up to 8 MiB
/// more) before answering, where closing with it unread would reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_an_oversized_body_reads_the_413() {
    use std::io::{Read, Write};
    let fixture = Fixture::new();
    let server = Server::start(fixture.state()).await;
    let head = format!(
        "POST /v1/models/{}/predict HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        fixture.large_id(),
        fixture.bearer()
    );
    let addr = server.addr;
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(head.as_bytes())?;
        // 6 MiB in 64 KiB chunks: more than the limit (1 MiB) and than
        // the sockets' buffers hold.
        let chunk = vec![1u8; 64 << 10];
        for _ in 0..96 {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            stream.write_all(&chunk)?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .await
    .unwrap()
    .expect("the whole body is sent and the answer read");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_answers_are_429_or_503_never_500() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let mut config = fixture.config();
    config.limits.max_concurrent = 2;
    config.limits.max_queue = 2;
    config.limits.queue_timeout = Duration::from_millis(20);
    let server = Arc::new(Server::start(Arc::new(AppState::load(&config).unwrap())).await);
    let (content_type, body) = multipart(&vec![png(300, 300, 1); 8]);
    let auth = fixture.bearer();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (server, content_type, body, auth, path) = (
                server.clone(),
                content_type.clone(),
                body.clone(),
                auth.clone(),
                format!("/v1/models/{large_id}/predict"),
            );
            tokio::spawn(async move {
                let headers = [
                    ("authorization", auth.as_str()),
                    ("content-type", content_type.as_str()),
                ];
                server.send(Method::POST, &path, &headers, body).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status != 200 {
            let code = error_code(&body);
            assert!(
                matches!((status, code.as_str()), (429, "busy") | (503, "overloaded")),
                "{status} {code}"
            );
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().any(|&s| s == 429 || s == 503),
        "the cap never refused: {statuses:?}"
    );
    let (status, _) = server.send(Method::GET, "/healthz", &[], Vec::new()).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_serving_stops_at_the_next_request() {
    let fixture = Fixture::new();
    let server = Server::start(fixture.state()).await;
    let store = TokenStore::new(&fixture.tokens);
    let (record, token) = store.create("temporary", 5).unwrap();
    let models = |auth: String| {
        let server = &server;
        async move {
            let headers = [("authorization", auth.as_str())];
            server
                .send(Method::GET, "/v1/models", &headers, Vec::new())
                .await
                .0
        }
    };
    assert_eq!(models(format!("Bearer {token}")).await, 200);
    store.revoke(&record.id, 6).unwrap();
    assert_eq!(models(format!("Bearer {token}")).await, 401);
    assert_eq!(models(fixture.bearer()).await, 200);
}

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_semiclass-serve"));
    command.env("ORT_DYLIB_PATH", onnxruntime());
    command
}

/// Kills the child on drop, so a failing test leaves no server behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_refuses_a_public_address_without_tokens() {
    let fixture = Fixture::new();
    let tokens = fixture.dir.path().join("none.json");
    let output = binary()
        .args([
            "--tokens",
            tokens.to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--package",
        ])
        .arg(&fixture.small)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
}

#[test]
fn the_binary_makes_tokens_and_serves_with_them_until_sigterm() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let tokens = fixture.dir.path().join("cli-tokens.json");
    let tokens_arg = ["--tokens", tokens.to_str().unwrap()];
    let created = binary()
        .args(tokens_arg)
        .args(["token", "create", "--name", "cli"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let listed = binary()
        .args(tokens_arg)
        .args(["token", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains(" cli") && !listed.contains(&token[13..]),
        "{listed}"
    );
    let mut child = Running(
        binary()
            .args(tokens_arg)
            .args(["serve", "--listen", "127.0.0.1:0", "--package"])
            .arg(&fixture.large)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listening_address(&mut stderr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = Server::at(addr);
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "image/png"),
    ];
    let path = format!("/v1/models/{large_id}/predict?topk=2");
    let (status, body) =
        runtime.block_on(server.send(Method::POST, &path, &headers, png(64, 48, 9)));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut log = String::new();
    stderr.read_line(&mut log).unwrap();
    assert!(
        log.contains("POST /v1/models/") && log.contains(" 200 "),
        "{log}"
    );
    assert!(!log.contains(&token[13..]), "the token was logged: {log}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        child.0.wait().unwrap().success(),
        "SIGTERM should stop it cleanly"
    );
}

/// Reads the server's log until it says where it listens.
pub fn listening_address(stderr: &mut impl BufRead) -> SocketAddr {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            return rest.trim().parse().unwrap();
        }
    }
}

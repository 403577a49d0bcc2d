//! Login, the session cookie, the session check on every route, Origin.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::common::{ORIGIN, TOKEN, TestStudio, form_body, two_class_dataset};

/// Every route the studio has (and a path none has): each needs a session.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/datasets"),
    ("POST", "/datasets"),
    ("GET", "/datasets/1"),
    ("POST", "/datasets/1/check"),
    ("GET", "/datasets/1/histogram.png"),
    ("GET", "/train/new"),
    ("POST", "/train/preview"),
    ("POST", "/train"),
    ("GET", "/jobs"),
    ("GET", "/jobs/1"),
    ("GET", "/jobs/1/log"),
    ("GET", "/jobs/1/status"),
    ("GET", "/jobs/1/events"),
    ("POST", "/datasets/upload"),
    ("POST", "/jobs/1/cancel"),
    ("POST", "/jobs/1/resume"),
    ("GET", "/jobs/1/config.yaml"),
    ("GET", "/jobs/1/files/checkpoints/best.safetensors"),
    ("POST", "/train/config.yaml"),
    ("GET", "/runs"),
    ("GET", "/runs/1"),
    ("GET", "/runs/1/files/checkpoints/best.safetensors"),
    ("GET", "/marks"),
    ("POST", "/marks"),
    ("POST", "/marks/unmark"),
    ("GET", "/evals"),
    ("POST", "/evals"),
    ("GET", "/evals/1"),
    ("GET", "/evals/1/files/report.json"),
    ("GET", "/jobs/1/result"),
    ("GET", "/deploy"),
    ("POST", "/deploy/export"),
    ("GET", "/deploy/packages/x/download"),
    ("POST", "/deploy/serve"),
    ("POST", "/deploy/serve/stop"),
    ("POST", "/deploy/tokens"),
    ("POST", "/deploy/tokens/x/revoke"),
    ("GET", "/deploy/try"),
    ("POST", "/deploy/try"),
    ("GET", "/no/such/page"),
];

fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

#[tokio::test]
async fn every_route_needs_a_session_and_a_wrong_cookie_is_none() {
    let data = two_class_dataset();
    let mut t = TestStudio::new();
    let body = form_body(&[("path", data.path().to_str().unwrap())]);
    for cookie in [None, Some("semiclass_studio_session=guess".to_string())] {
        t.cookie = cookie;
        for (method, path) in ROUTES {
            let answer = t
                .send(request(method, path), Body::from(body.clone()))
                .await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(
                answer.body.contains("Log in"),
                "{method} {path}: {}",
                answer.body
            );
        }
    }
    // The token itself is no session cookie either.
    t.cookie = Some(format!("semiclass_studio_session={TOKEN}"));
    assert_eq!(t.get("/datasets").await.status, StatusCode::UNAUTHORIZED);
    assert!(
        t.registry().datasets().unwrap().is_empty(),
        "nothing was added"
    );
}

#[tokio::test]
async fn the_token_opens_a_strict_http_only_session() {
    let t = TestStudio::new();
    let wrong = t.get("/datasets?token=not-the-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    assert!(
        wrong.body.contains("does not open the studio"),
        "{}",
        wrong.body
    );

    let right = t.get(&format!("/jobs?token={TOKEN}")).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    // The token leaves the address bar: back to the page without it.
    assert_eq!(right.headers[header::LOCATION], "/jobs");
    let cookie = right.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the session is not the token: {cookie}"
    );

    let logged = TestStudio::logged_in().await;
    let page = logged.get("/jobs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Jobs"));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    // Not `no-referrer`: browsers would send `Origin: null` with plain form posts.
    assert_eq!(page.headers[header::REFERRER_POLICY], "same-origin");
}

#[tokio::test]
async fn the_login_form_and_the_assets_need_no_session() {
    let t = TestStudio::new();
    assert_eq!(t.get("/login").await.status, StatusCode::OK);
    let css = t.get("/assets/studio.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let htmx = t.get("/assets/htmx-2.0.11.min.js").await;
    assert_eq!(htmx.status, StatusCode::OK);
    assert!(htmx.body.contains("htmx"));
    assert_eq!(
        t.get("/assets/secrets.txt").await.status,
        StatusCode::NOT_FOUND
    );
    // A login by form works as the URL does.
    let body = form_body(&[("token", TOKEN)]);
    let login = t.send(request("POST", "/login"), Body::from(body)).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    assert!(login.headers.contains_key(header::SET_COOKIE));
}

#[tokio::test]
async fn a_change_from_another_origin_or_none_is_refused_and_changes_nothing() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let body = form_body(&[("path", data.path().to_str().unwrap())]);
    let other = Request::post("/datasets")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let answer = t.send(other, Body::from(body.clone())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("evil.example"), "{}", answer.body);
    let none = Request::post("/datasets")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let answer = t.send(none, Body::from(body)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("no Origin"), "{}", answer.body);
    assert!(t.registry().datasets().unwrap().is_empty());
}

#[test]
fn a_non_loopback_address_needs_a_configured_token() {
    use semiclass_studio::listen::{StudioToken, check_listen, studio_token};
    let generated = studio_token(None, None).unwrap();
    assert!(!generated.configured && generated.token.len() >= 43);
    let public = "0.0.0.0:8765".parse().unwrap();
    let err = check_listen(public, &generated).unwrap_err().to_string();
    assert!(err.contains("set a token first"), "{err}");
    assert!(check_listen("127.0.0.1:8765".parse().unwrap(), &generated).is_ok());
    let configured = StudioToken {
        token: TOKEN.into(),
        configured: true,
    };
    assert!(check_listen(public, &configured).is_ok());
    let short = studio_token(None, Some("short".into()))
        .unwrap_err()
        .to_string();
    assert!(short.contains("shorter than"), "{short}");
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = semiclass_studio::listen::studio_token(Some(&file), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = semiclass_studio::listen::studio_token(Some(&file), None).unwrap();
    assert_eq!((token.token.as_str(), token.configured), (TOKEN, true));
}

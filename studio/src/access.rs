//! Who may use the studio: like Jupyter, a token printed at start (or set
//! in a file or the environment) is exchanged once for a session cookie
//! (HttpOnly, SameSite=Strict); every other request needs that cookie.
//! Only hashes of the token and of the sessions are kept, compared in
//! constant time (`semiclass_access`). Requests that change something must
//! also come from the studio's own pages (their Origin), which keeps other
//! sites from driving a logged-in browser.

use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::{Markup, html};
use semiclass_access::{TokenSet, new_secret};
use serde::Deserialize;

use crate::layout;
use crate::state::Studio;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "semiclass_studio_session";

/// Paths served without a session: the login page and the static assets
/// it needs (nothing secret: CSS and the htmx library).
pub const PUBLIC_PATHS: &[&str] = &["/login", "/assets/"];

/// The login token and the sessions it opened (hashes only).
#[derive(Debug)]
pub struct Access {
    token: TokenSet,
    sessions: Mutex<TokenSet>,
}

impl Access {
    /// Access with `token` as the one login token.
    pub fn new(token: &str) -> Access {
        let mut set = TokenSet::default();
        set.insert(token);
        Access {
            token: set,
            sessions: Mutex::new(TokenSet::default()),
        }
    }

    /// A new session's secret when `token` is the login token.
    pub fn open_session(&self, token: &str) -> Option<String> {
        if !self.token.verify(token) {
            return None;
        }
        let secret = new_secret();
        self.sessions().insert(&secret);
        Some(secret)
    }

    /// Whether `secret` is the secret of an open session.
    pub fn is_session(&self, secret: &str) -> bool {
        self.sessions().verify(secret)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, TokenSet> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /login`, or `/login?token=T` (what the printed URL leads to).
pub async fn login_page(
    State(studio): State<Arc<Studio>>,
    Query(query): Query<TokenQuery>,
) -> Response {
    match query.token {
        Some(token) => exchange(&studio, &token, "/"),
        None => layout::bare_page("Log in", login_form_markup(None)).into_response(),
    }
}

/// `POST /login` with the token typed into the form.
pub async fn login_form(
    State(studio): State<Arc<Studio>>,
    Form(form): Form<TokenQuery>,
) -> Response {
    exchange(&studio, form.token.as_deref().unwrap_or_default(), "/")
}

/// The token for a session cookie and a redirect to `to` (which drops the
/// token from the address bar and the history), or 401.
fn exchange(studio: &Studio, token: &str, to: &str) -> Response {
    let Some(secret) = studio.access.open_session(token.trim()) else {
        let message = "this token does not open the studio: use the URL `semiclass studio` printed, or the token you configured";
        return unauthorized(Some(message));
    };
    let cookie = Cookie::build((SESSION_COOKIE, secret))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/");
    (CookieJar::new().add(cookie), Redirect::to(to)).into_response()
}

/// Lets a request with a session through; a page visited with `?token=`
/// logs in first; anything else gets 401 and the login form.
pub async fn require_session(
    State(studio): State<Arc<Studio>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC_PATHS
        .iter()
        .any(|p| path == *p || (p.ends_with('/') && path.starts_with(p)))
    {
        return next.run(request).await;
    }
    let jar = CookieJar::from_headers(request.headers());
    if jar
        .get(SESSION_COOKIE)
        .is_some_and(|c| studio.access.is_session(c.value()))
    {
        return next.run(request).await;
    }
    let token = Query::<TokenQuery>::try_from_uri(request.uri())
        .ok()
        .and_then(|q| q.0.token);
    match token {
        Some(token) if request.method() == Method::GET => exchange(&studio, &token, path),
        _ => {
            let mut response = unauthorized(None);
            if request.headers().contains_key("hx-request") {
                // htmx follows this instead of swapping a login form into a fragment.
                response
                    .headers_mut()
                    .insert("hx-redirect", HeaderValue::from_static("/login"));
            }
            response
        }
    }
}

fn unauthorized(message: Option<&str>) -> Response {
    let page = layout::bare_page("Log in", login_form_markup(message));
    (StatusCode::UNAUTHORIZED, page).into_response()
}

fn login_form_markup(message: Option<&str>) -> Markup {
    html! {
        section.card.narrow {
            h1 { "semiclass studio" }
            @if let Some(message) = message { div.problems role="alert" { p { (message) } } }
            p { "Open the URL that " code { "semiclass studio" } " printed when it started, or paste its token." }
            form method="post" action="/login" {
                label { "Token" input type="password" name="token" autocomplete="off" required; }
                button type="submit" { "Log in" }
            }
        }
    }
}

/// Refuses a request that changes something (any method but GET, HEAD and
/// OPTIONS) unless its Origin is this studio's own (`http://` + Host):
/// browsers send Origin with such requests, and another site cannot
/// forge it.
pub async fn same_origin(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe {
        return next.run(request).await;
    }
    match origin_problem(request.headers()) {
        None => next.run(request).await,
        Some(problem) => (StatusCode::FORBIDDEN, problem).into_response(),
    }
}

fn origin_problem(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text(header::HOST) else {
        return Some("request refused: no Host header".into());
    };
    let own = format!("http://{host}");
    match text(header::ORIGIN) {
        Some(origin) if origin == own => None,
        Some(origin) => Some(format!(
            "cross-origin request refused: Origin {origin} is not this studio ({own}); use the studio's own pages"
        )),
        None => Some(format!(
            "request refused: it changes something but has no Origin header; send it from the studio's pages ({own})"
        )),
    }
}

/// What the browser may load and do with the studio's pages: only the
/// studio's own files (everything is embedded), never inside another
/// site's frame (clickjacking the Cancel button).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

/// Adds the security headers to every answer.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing leaves for other sites; `no-referrer` would also make
    // browsers send `Origin: null` with the studio's own plain form posts
    // (Cancel, Resume, the YAML download, the login form), which the
    // Origin check then refuses.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_opens_sessions_and_only_opened_sessions_count() {
        let access = Access::new("the-token");
        assert!(access.open_session("not-it").is_none());
        let secret = access.open_session("the-token").unwrap();
        assert!(access.is_session(&secret));
        assert!(!access.is_session("the-token"), "the token is no session");
        assert!(!access.is_session(""));
    }

    #[test]
    fn origin_must_be_the_host_itself() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8765".parse().unwrap());
        assert!(origin_problem(&headers).unwrap().contains("no Origin"));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8765".parse().unwrap());
        assert_eq!(origin_problem(&headers), None);
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(origin_problem(&headers).unwrap().contains("evil.example"));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(origin_problem(&headers).is_some());
    }
}

//! semiclass studio: the source product's workflow in the browser, as a
//! local web application over the same registry, dataset check and
//! training configuration as the CLI (`semiclass studio`).
//!
//! What exists: token login (Jupyter-style) with a session cookie and an
//! Origin check; datasets (a folder by path or an uploaded zip) with their
//! check report; the training form generated from the configuration's
//! schema; a persistent job queue whose jobs are `semiclass train` child
//! processes, with cancel, resume and a live run page (log, stage table,
//! curves, summary, checkpoint downloads); marks with their history.

pub mod access;
mod assets;
pub mod datasets;
pub mod deploy;
pub mod error;
pub mod evals;
pub mod job_results;
pub mod jobs;
mod layout;
pub mod listen;
pub mod marks;
pub mod runs;
pub mod state;
pub mod train_form;

pub use error::StudioError;
pub use state::{Studio, StudioOptions};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};

/// Form bodies are small; uploads get their own limit where they exist.
const FORM_BODY_LIMIT: usize = 256 * 1024;

/// Every route of the studio. The session check and, for requests that
/// change something, the Origin check wrap the whole router, fallback
/// included, so a route added later is guarded without anyone
/// remembering to; the session check lets only the login page and the
/// static assets through (`access::PUBLIC_PATHS`).
pub fn app(studio: Arc<Studio>) -> Router {
    Router::new()
        .route("/login", get(access::login_page).post(access::login_form))
        .route("/assets/{name}", get(assets::asset))
        .route("/", get(datasets::pages::index))
        .route(
            "/datasets",
            get(datasets::pages::list).post(datasets::pages::add),
        )
        .route(
            "/datasets/upload",
            post(datasets::upload_route::upload).layer(DefaultBodyLimit::max(
                datasets::upload_route::MAX_UPLOAD_BYTES,
            )),
        )
        .route("/datasets/{id}", get(datasets::pages::report))
        .route("/datasets/{id}/check", post(datasets::pages::recheck))
        .route(
            "/datasets/{id}/histogram.png",
            get(datasets::pages::histogram_png),
        )
        .route("/train/new", get(train_form::pages::new_training))
        .route("/train/preview", post(train_form::pages::preview))
        .route("/train", post(train_form::pages::submit))
        .route("/train/config.yaml", post(train_form::pages::config_yaml))
        .route("/jobs", get(jobs::pages::list))
        .route("/jobs/{id}", get(jobs::pages::show))
        .route("/jobs/{id}/status", get(jobs::live::status))
        .route("/jobs/{id}/log", get(jobs::live::log_file))
        .route("/jobs/{id}/events", get(jobs::live::events))
        .route("/jobs/{id}/cancel", post(jobs::pages::cancel))
        .route("/jobs/{id}/resume", post(jobs::pages::resume))
        .route("/jobs/{id}/config.yaml", get(jobs::downloads::config_yaml))
        .route("/jobs/{id}/files/{*path}", get(jobs::downloads::run_file))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/files/{*path}", get(runs::run_file))
        .route("/marks", get(marks::pages::list).post(marks::pages::mark))
        .route("/marks/unmark", post(marks::pages::unmark))
        .route(
            "/evals",
            get(evals::pages::list)
                .post(evals::pages::submit)
                .layer(DefaultBodyLimit::max(evals::pages::MAX_LIST_BYTES)),
        )
        .route("/evals/{id}", get(evals::report::show))
        .route("/evals/{id}/files/{name}", get(evals::report::file))
        .route("/jobs/{id}/result", get(job_results::result))
        .route("/deploy", get(deploy::pages::show))
        .route("/deploy/export", post(deploy::pages::export))
        .route(
            "/deploy/packages/{name}/download",
            get(deploy::pages::download),
        )
        .route("/deploy/serve", post(deploy::pages::start))
        .route("/deploy/serve/stop", post(deploy::pages::stop))
        .route("/deploy/tokens", post(deploy::pages::create_token))
        .route(
            "/deploy/tokens/{id}/revoke",
            post(deploy::pages::revoke_token),
        )
        .route(
            "/deploy/try",
            get(deploy::tryout::form)
                .post(deploy::tryout::predict)
                .layer(DefaultBodyLimit::max(deploy::tryout::MAX_IMAGE_BYTES)),
        )
        .fallback(error::not_found)
        .layer(from_fn_with_state(studio.clone(), access::require_session))
        .layer(from_fn_with_state(studio.clone(), access::same_origin))
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(map_response(access::security_headers))
        .with_state(studio)
}

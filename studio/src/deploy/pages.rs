//! `GET /deploy`: export a checkpoint, the exported packages with their
//! download links, serving them (start, stop, tokens).

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use semiclass_manifest::package::Target;

use super::export::ExportRequest;
use super::packages::{self, PackageEntry};
use super::serving::ServedView;
use crate::datasets::pages::go_to;
use crate::error::StudioError;
use crate::evals::pages::{checkpoint_choices, jobs_in_flight};
use crate::layout::{Section, page, when};
use crate::state::Studio;

/// The port a studio's server listens on unless told otherwise.
const DEFAULT_PORT: u16 = 8080;

/// `GET /deploy`.
pub async fn show(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let choices = checkpoint_choices(&studio.registry()?)?;
    let listed = {
        let studio = studio.clone();
        tokio::task::spawn_blocking(move || packages::list(&studio))
            .await
            .map_err(|e| StudioError::Internal(e.to_string()))?
    };
    let served = studio.serving.view();
    Ok(page(
        "Deploy",
        Section::Deploy,
        html! {
            h1 { "Deploy" }
            h2 { "Export" }
            (export_form(&choices))
            (jobs_in_flight(&studio.registry()?, "export")?)
            h2 { "Packages" }
            (packages_table(&listed))
            h2 { "Serving" }
            (serving_card(&listed, served.as_ref()))
            h2 { "Access tokens" }
            (tokens_card(&studio))
        },
    ))
}

fn export_form(choices: &[(String, String)]) -> Markup {
    if choices.is_empty() {
        return html! { p.card { "No checkpoint yet: " a href="/train/new" { "train one" } " first." } };
    }
    html! {
        form.card.stack #export-form hx-post="/deploy/export" hx-target="#export-problems" {
            label { "checkpoint" select name="checkpoint" {
                @for (value, text) in choices { option value=(value) { (text) } }
            } }
            label { "target" select name="target" {
                @for t in Target::ALL { option value=(t.as_str()) { (t.as_str()) } }
            } }
            label { "offline SDK" span.row { input type="checkbox" name="sdk" style="width:auto"; span.hint { "with the SDK, the model is encrypted and runs after activation with a serial; without it, the package is for serving" } } }
            div.row { button type="submit" { "Export" } }
            div #export-problems {}
        }
    }
}

fn packages_table(listed: &[PackageEntry]) -> Markup {
    if listed.is_empty() {
        return html! { p.hint { "No package exported yet." } };
    }
    html! {
        table #packages {
            thead { tr { th { "Package" } th { "Model" } th { "Target" } th { "Classes" } th { "Created" } th {} } }
            tbody { @for p in listed {
                tr {
                    @match &p.manifest {
                        Ok(m) => {
                            td { code { (m.package_id) } }
                            td { (m.model.arch) " (" (format!("{:?}", m.model.role).to_lowercase()) ", " (format!("{:?}", m.model.precision).to_lowercase()) ")" }
                            td { (m.target) @if m.license.required { " · SDK" } }
                            td.num { (m.model.class_names.len()) }
                            td { (m.created.replace(['T', 'Z'], " ")) }
                        }
                        Err(why) => { td colspan="5" { span.badge.bad { "unusable" } " " (why) } }
                    }
                    td { a href={ "/deploy/packages/" (p.name) "/download" } download { "download" } }
                }
            } }
        }
    }
}

fn serving_card(listed: &[PackageEntry], served: Option<&ServedView>) -> Markup {
    if let Some(view) = served {
        let url = format!("http://{}", view.addr);
        return html! {
            div.card #serving {
                p { span.badge.running { "serving" } " on " a href=(url) { (url) } " · " a href="/deploy/try" { "try an image" } }
                ul { @for (id, role) in &view.models { li { code { (id) } " (" (role) ")" } } }
                p.hint { "Predict: " code { "curl -H 'Authorization: Bearer TOKEN' -F image=@photo.jpg " (url) "/v1/models/MODEL/predict" } }
                form hx-post="/deploy/serve/stop" { button.secondary type="submit" { "Stop serving" } }
            }
        };
    }
    // Packages with the SDK hold an encrypted model that opens only there.
    let servable: Vec<&PackageEntry> = listed
        .iter()
        .filter(|p| {
            p.manifest
                .as_ref()
                .is_ok_and(|m| m.model.encryption.is_none())
        })
        .collect();
    if servable.is_empty() {
        return html! { p.hint { "Export a package without the offline SDK to serve it." } };
    }
    html! {
        form.card.stack #serve-form hx-post="/deploy/serve" hx-target="#serve-problems" {
            @for p in &servable {
                @if let Ok(m) = &p.manifest {
                    label { span.row { input type="checkbox" name="package" value=(p.name) style="width:auto"; code { (m.package_id) } } }
                }
            }
            label { "port (127.0.0.1)" input type="number" name="port" value=(DEFAULT_PORT) min="0" max="65535"; }
            div.row { button type="submit" { "Start serving" } span.hint { "the engine of " code { "semiclass-serve" } ", inside the studio" } }
            div #serve-problems {}
        }
    }
}

fn tokens_card(studio: &Studio) -> Markup {
    let store = studio.serving.token_store();
    let records = match store.read() {
        Ok(records) => records,
        // The rest of the page still works; the card says what to fix.
        Err(e) => return html! { div.problems #tokens role="alert" { p { (e) } } },
    };
    html! {
        div.card #tokens {
            p.hint { "The API's tokens, kept hashed in " code { (store.path().display()) } " (the file " code { "semiclass-serve --tokens" } " reads); a new token is shown once." }
            @if !records.is_empty() {
                table {
                    thead { tr { th { "id" } th { "name" } th { "created" } th { "state" } th {} } }
                    tbody { @for r in &records {
                        tr {
                            td { code { (r.id) } } td { (r.name) } td { (when(r.created as i64)) }
                            td { @if r.revoked.is_some() { span.badge.bad { "revoked" } } @else { span.badge.ok { "active" } } }
                            td { @if r.revoked.is_none() {
                                form hx-post={ "/deploy/tokens/" (r.id) "/revoke" } { button.secondary type="submit" { "Revoke" } }
                            } }
                        }
                    } }
                }
            }
            form.row hx-post="/deploy/tokens" hx-target="#new-token" {
                input type="text" name="name" placeholder="who uses it (e.g. mobile-app)" required style="max-width:20rem";
                button type="submit" { "Create a token" }
            }
            div #new-token {}
        }
    }
}

/// `POST /deploy/export`: queue the export; its job page follows.
pub async fn export(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(request): Form<ExportRequest>,
) -> Result<Response, StudioError> {
    let job = request.job(&studio)?;
    let id = studio.jobs.enqueue(&job)?;
    Ok(go_to(&headers, &format!("/jobs/{id}")))
}

/// `GET /deploy/packages/{name}/download`.
pub async fn download(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
) -> Result<Response, StudioError> {
    let found = tokio::task::spawn_blocking(move || -> Result<_, StudioError> {
        let entry = packages::find(&studio, &name)?;
        let bytes = std::fs::read(&entry.zip)
            .map_err(|e| StudioError::Internal(format!("{}: {e}", entry.zip.display())))?;
        Ok((entry, bytes))
    })
    .await
    .map_err(|e| StudioError::Internal(e.to_string()))??;
    let (entry, bytes) = found;
    let file = entry
        .zip
        .file_name()
        .map(|f| f.to_string_lossy().replace('"', ""))
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /deploy/serve`: `package` (repeated) and `port`.
pub async fn start(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, StudioError> {
    let mut names = Vec::new();
    let mut port = DEFAULT_PORT;
    for (key, value) in pairs {
        match key.as_str() {
            "package" => names.push(value),
            "port" => {
                port = value.trim().parse().map_err(|_| {
                    StudioError::Invalid(format!("port '{value}': a number from 0 to 65535"))
                })?;
            }
            _ => {}
        }
    }
    let zips = {
        let studio = studio.clone();
        tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|n| packages::find(&studio, n).map(|p| p.zip))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StudioError::Internal(e.to_string()))??
    };
    studio.serving.start(zips, port).await?;
    Ok(go_to(&headers, "/deploy"))
}

/// `POST /deploy/serve/stop`.
pub async fn stop(
    State(studio): State<Arc<Studio>>,
    headers: HeaderMap,
) -> Result<Response, StudioError> {
    studio.serving.stop().await?;
    Ok(go_to(&headers, "/deploy"))
}

#[derive(Debug, serde::Deserialize)]
pub struct NewToken {
    #[serde(default)]
    name: String,
}

/// `POST /deploy/tokens`: the new token, shown this once.
pub async fn create_token(
    State(studio): State<Arc<Studio>>,
    Form(form): Form<NewToken>,
) -> Result<Markup, StudioError> {
    let name = form.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(StudioError::Invalid(
            "name the token (who uses it), in at most 100 characters".into(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (record, token) = studio
        .serving
        .token_store()
        .create(name, now)
        .map_err(|e| StudioError::Internal(e.to_string()))?;
    Ok(html! {
        div.card {
            p { "Token " code { (record.id) } " for " (record.name) ": copy it now, it is not shown again (only its hash is kept)." }
            p.secret #token-secret { (token) }
        }
    })
}

/// `POST /deploy/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(studio): State<Arc<Studio>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, StudioError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    studio
        .serving
        .token_store()
        .revoke(&id, now)
        .map_err(|e| match e {
            semiclass_serve::tokens::TokenError::UnknownId { .. } => {
                StudioError::NotFound(format!("no token with id '{id}'"))
            }
            other => StudioError::Internal(other.to_string()),
        })?;
    Ok(go_to(&headers, "/deploy"))
}

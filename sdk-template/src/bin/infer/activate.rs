//! `infer activate`: online against the vendor's server, or offline by
//! request file and then the license file.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use semiclass_licensing::{ActivationDir, Serial};
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_sdk::{Package, environment};

#[derive(clap::Args)]
pub struct Args {
    /// Your serial, e.g. CG56-GDGD-ZXVK-F7CR-0Q2B.
    #[arg(long, conflicts_with = "license")]
    serial: Option<String>,
    /// Write an activation request file to send to the vendor.
    #[arg(long, requires = "serial", conflicts_with = "server")]
    offline: bool,
    /// Activate online against the vendor's server.
    #[arg(long, requires = "serial")]
    server: Option<String>,
    /// Install the license file the vendor sent back.
    #[arg(long)]
    license: Option<PathBuf>,
}

pub fn run(package: &Package, activation: &ActivationDir, args: Args) -> Result<()> {
    match (args.serial, args.license) {
        (_, Some(license)) => install(activation, &license),
        (Some(serial), None) if args.server.is_some() => {
            let server = args.server.as_deref().unwrap_or_default();
            online(package, activation, &serial, server)
        }
        (Some(serial), None) if args.offline => request(package, activation, &serial),
        (Some(_), None) => {
            bail!("choose how to activate: --offline (request file) or --server URL")
        }
        (None, None) => bail!(
            "give your serial (`infer activate --serial XXXX-XXXX-XXXX-XXXX-XXXX --offline`) or the license file you received (`infer activate --license FILE`)"
        ),
    }
}

fn request(package: &Package, activation: &ActivationDir, serial: &str) -> Result<()> {
    let serial: Serial = serial.parse()?;
    let env = environment()?;
    let machine = env.machine.fingerprint(package.manifest.target)?;
    activation.begin(serial, &package.manifest.package_id, &machine, env.now)?;
    let path = activation.request_path();
    println!("activation request written to {}", path.display());
    println!(
        "send this file to your vendor (it holds your serial, the package id and hashed machine identifiers, no secrets);"
    );
    println!("then install the license file you get back with:");
    println!("  infer activate --license FILE");
    Ok(())
}

/// The same request as `--offline`, sent to `server`'s `/v1/activate`,
/// whose answer is the license file's text.
fn online(package: &Package, activation: &ActivationDir, serial: &str, server: &str) -> Result<()> {
    let serial: Serial = serial.parse()?;
    let env = environment()?;
    let machine = env.machine.fingerprint(package.manifest.target)?;
    let request = activation.begin(serial, &package.manifest.package_id, &machine, env.now)?;
    let url = format!("{}/v1/activate", server.trim_end_matches('/'));
    let license = post_request(&url, &request.to_json())?;
    let payload = activation
        .install(&license, &env)
        .with_context(|| format!("the license from {url}"))?;
    print_installed(activation, &payload);
    Ok(())
}

#[derive(serde::Deserialize)]
struct Granted {
    license: String,
}

#[derive(serde::Deserialize)]
struct Refused {
    message: String,
}

/// POSTs the request; the license text, or why the server refused.
fn post_request(url: &str, request: &str) -> Result<String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(request)
        .with_context(|| format!("{url}: cannot reach the activation server; check the URL and the network, or activate --offline"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .with_context(|| format!("{url}: the answer could not be read"))?;
    if status.is_success() {
        let granted: Granted = serde_json::from_str(&body)
            .with_context(|| format!("{url}: not an activation server's answer"))?;
        return Ok(granted.license);
    }
    let reason = serde_json::from_str::<Refused>(&body).map_or(body, |r| r.message);
    bail!(
        "{url}: activation refused (HTTP {}): {reason}",
        status.as_u16()
    )
}

fn install(activation: &ActivationDir, license: &PathBuf) -> Result<()> {
    let text = fs::read_to_string(license).with_context(|| license.display().to_string())?;
    let payload = activation
        .install(&text, &environment()?)
        .with_context(|| license.display().to_string())?;
    print_installed(activation, &payload);
    Ok(())
}

fn print_installed(activation: &ActivationDir, payload: &semiclass_licensing::LicensePayload) {
    let expires = payload.expires.map_or_else(
        || "never expires".to_string(),
        |e| format!("expires {}", rfc3339_utc(e)),
    );
    println!(
        "license installed for package {} (serial {}, {expires}) in {}",
        payload.package_id,
        payload.serial,
        activation.license_path().display()
    );
}

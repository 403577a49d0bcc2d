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
    /// Activate online against the vendor's server (https://..., or
    /// http:// on this machine).
    #[arg(long, requires = "serial")]
    server: Option<String>,
    /// Allow --server http:// to another machine: the serial then crosses
    /// the network in clear text.
    #[arg(long, requires = "server")]
    insecure: bool,
    /// Install the license file the vendor sent back.
    #[arg(long)]
    license: Option<PathBuf>,
}

pub fn run(package: &Package, activation: &ActivationDir, args: Args) -> Result<()> {
    match (args.serial, args.license) {
        (_, Some(license)) => install(activation, &license),
        (Some(serial), None) if args.server.is_some() => {
            let server = args.server.as_deref().unwrap_or_default();
            if let Some(warning) = check_transport(server, args.insecure)? {
                eprintln!("warning: {warning}");
            }
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
        "send this file to your vendor (it holds your serial, the package id, hashed machine identifiers and this machine's public key; no secrets);"
    );
    println!("then install the license file you get back with:");
    println!("  infer activate --license FILE");
    Ok(())
}

/// Whether the serial may be sent to `server`: over HTTPS, or over plain
/// HTTP to this machine; to another machine only with `--insecure`, and
/// then with a warning (returned).
fn check_transport(server: &str, insecure: bool) -> Result<Option<String>> {
    let lower = server.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(None);
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        bail!("{server}: not an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let clear = format!("{server}: plain HTTP sends your serial in clear text");
    match (loopback, insecure) {
        (true, _) => Ok(None),
        (false, true) => Ok(Some(format!("{clear} (--insecure given)"))),
        (false, false) => bail!(
            "{clear}; use the server's https:// URL, or pass --insecure on a network you trust"
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn the_serial_goes_in_clear_text_only_to_this_machine_or_when_allowed() {
        for fine in [
            "https://licenses.example.com",
            "http://127.0.0.1:8080",
            "HTTP://localhost/",
            "http://[::1]:9",
        ] {
            assert_eq!(check_transport(fine, false).unwrap(), None, "{fine}");
        }
        let err = check_transport("http://licenses.example.com", false).unwrap_err();
        assert!(
            err.to_string().contains("clear text") && err.to_string().contains("--insecure"),
            "{err}"
        );
        let warning = check_transport("http://10.0.0.5:8080", true).unwrap();
        assert!(warning.unwrap().contains("clear text"));
        assert!(check_transport("ftp://example.com", true).is_err());
        assert!(check_transport("http://localhost.evil.com", false).is_err());
    }
}

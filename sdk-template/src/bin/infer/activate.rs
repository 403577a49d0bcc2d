//! `infer activate`: offline by request file, then the license file.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use semiclass_licensing::{ActivationDir, Serial};
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_sdk::{Package, environment};

#[derive(clap::Args)]
pub struct Args {
    /// Your serial, e.g. CG56-GDGD-ZXVK-F7CR-0Q2W.
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
        (Some(_), None) if args.server.is_some() => bail!(
            "online activation (--server) is not available in this SDK yet: use --offline and send the request file to your vendor"
        ),
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

fn install(activation: &ActivationDir, license: &PathBuf) -> Result<()> {
    let text = fs::read_to_string(license).with_context(|| license.display().to_string())?;
    let payload = activation
        .install(&text, &environment()?)
        .with_context(|| license.display().to_string())?;
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
    Ok(())
}

//! `semiclass-license`: the vendor's tool. Make a signing key, register
//! packages, mint serials, and answer offline activation requests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use semiclass_license_issuer::dates::end_of_day;
use semiclass_license_issuer::{Issuer, IssuerDb, MintSpec, SerialRecord, keys};
use semiclass_licensing::{ActivationRequest, Serial, key_id, unix_now};
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_manifest::package::MANIFEST_FILE;
use semiclass_package::Package;

#[derive(Parser)]
#[command(
    name = "semiclass-license",
    version,
    about = "Issue semiclass licenses: keys, serials, activations"
)]
struct Cli {
    /// The issuer's database (created if missing).
    #[arg(long, global = true, default_value = "issuer.sqlite")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a signing key: FILE (private, mode 0600) and FILE.pub.json.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Also add the public key to this keyring, e.g. licensing/keys/keyring.json.
        #[arg(long)]
        keyring: Option<PathBuf>,
    },
    /// Register a package (its .zip, folder or manifest.json): every file is
    /// checked, then its model's and manifest's sha256 are recorded.
    AddPackage { manifest: PathBuf },
    /// Mint serials for a registered package; prints one per line.
    Issue {
        #[arg(long)]
        package: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How many machines one serial may activate.
        #[arg(long, default_value_t = 1)]
        max_activations: u32,
        /// Last day (UTC) the licenses are valid, e.g. 2027-12-31.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a serial: it can no longer be activated.
    Revoke { serial: String },
    /// List serials with their activations.
    List {
        #[arg(long)]
        package: Option<String>,
    },
    /// Answer an offline activation request with a license file.
    SignRequest {
        request: PathBuf,
        /// The private key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Write the license here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", semiclass_manifest::error_line(err.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, keyring } => keygen(&out, keyring.as_deref()),
        Command::AddPackage { manifest } => add_package(&cli.db, &manifest),
        Command::Issue {
            package,
            count,
            max_activations,
            expires,
        } => {
            let expires = expires.as_deref().map(end_of_day).transpose()?;
            if count == 0 || max_activations == 0 {
                bail!("--count and --max-activations must be at least 1");
            }
            let spec = MintSpec {
                package_id: package,
                max_activations,
                expires,
            };
            let serials = IssuerDb::open(&cli.db)?.mint(&spec, count, unix_now())?;
            serials.iter().for_each(|serial| println!("{serial}"));
            Ok(())
        }
        Command::Revoke { serial } => {
            let serial: Serial = serial.parse()?;
            IssuerDb::open(&cli.db)?.revoke(serial, unix_now())?;
            println!("revoked {serial}");
            Ok(())
        }
        Command::List { package } => list(&cli.db, package.as_deref()),
        Command::SignRequest { request, key, out } => {
            sign_request(&cli.db, &request, &key, out.as_deref())
        }
    }
}

fn keygen(out: &Path, keyring: Option<&Path>) -> Result<()> {
    let key = keys::generate();
    let public = PathBuf::from(format!("{}.pub.json", out.display()));
    keys::write_private_key(out, &key)?;
    keys::write_public_key(&public, &key)?;
    if let Some(keyring) = keyring {
        keys::add_to_keyring(keyring, &key)?;
        println!(
            "added to keyring {} (rebuild the SDK to trust it)",
            keyring.display()
        );
    }
    println!("key id {}", key_id(&key.verifying_key()));
    println!(
        "private key {} (keep it secret; never ship it)",
        out.display()
    );
    println!("public key {}", public.display());
    Ok(())
}

fn add_package(db: &Path, path: &Path) -> Result<()> {
    // A manifest stands for the unpacked package around it.
    let package_path = match path.file_name() == Some(MANIFEST_FILE.as_ref()) {
        true => path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
        false => path,
    };
    let package = Package::open(package_path)?;
    IssuerDb::open(db)?.add_package(&package, unix_now())?;
    let m = &package.manifest;
    println!(
        "package {} allows model sha256 {} with manifest sha256 {}",
        m.package_id, m.files[&m.model.onnx], package.manifest_sha256
    );
    Ok(())
}

fn list(db: &Path, package: Option<&str>) -> Result<()> {
    println!(
        "{:<24}  {:<40}  {:>11}  {:<20}  revoked",
        "serial", "package", "activations", "expires"
    );
    for SerialRecord {
        serial,
        package_id,
        activations,
        max_activations,
        expires,
        revoked,
    } in IssuerDb::open(db)?.list(package)?
    {
        let used = format!("{activations}/{max_activations}");
        let expires = expires.map_or_else(|| "never".to_string(), rfc3339_utc);
        let revoked = revoked.map_or_else(|| "-".to_string(), rfc3339_utc);
        println!("{serial:<24}  {package_id:<40}  {used:>11}  {expires:<20}  {revoked}");
    }
    Ok(())
}

fn sign_request(db: &Path, request: &Path, key: &Path, out: Option<&Path>) -> Result<()> {
    let text = fs::read_to_string(request).with_context(|| request.display().to_string())?;
    let parsed =
        ActivationRequest::from_json(&text).with_context(|| request.display().to_string())?;
    let issuer = Issuer::new(db, keys::read_private_key(key)?)?;
    let license = issuer.activate(&parsed, unix_now())?;
    match out {
        Some(out) => {
            fs::write(out, &license).with_context(|| out.display().to_string())?;
            eprintln!(
                "license for {} on package {} written to {}",
                parsed.serial,
                parsed.package_id,
                out.display()
            );
        }
        None => print!("{license}"),
    }
    Ok(())
}

//! Why the issuer refused. The activation refusals reach end users through
//! `/v1/activate` and the offline flow, so they say what the buyer can do.

use std::io;
use std::path::PathBuf;

use semiclass_licensing::{RequestError, Serial};
use semiclass_manifest::checkpoint::rfc3339_utc;

/// An issuer failure or refusal.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}", path = path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("{path}: is readable by others (mode {mode:o}), and it holds secrets: run `chmod 600` on it", path = path.display())]
    ReadableByOthers { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("{text:?} is not a date like 2027-12-31")]
    BadDate { text: String },
    #[error(
        "package {package} is not registered: run `semiclass-license add-package path/to/manifest.json` first"
    )]
    UnknownPackage { package: String },
    #[error("serial {serial} was never issued: check it for typos, or contact the vendor")]
    UnknownSerial { serial: Serial },
    #[error("serial {serial} was revoked: contact the vendor")]
    Revoked { serial: Serial },
    #[error(
        "serial {serial} is for package {licensed}, not {requested}: use the serial sold with this package"
    )]
    WrongPackage {
        serial: Serial,
        licensed: String,
        requested: String,
    },
    #[error("serial {serial} expired at {}: renew it with the vendor", rfc3339_utc(*.expires))]
    SerialExpired { serial: Serial, expires: u64 },
    #[error(
        "serial {serial} is already activated on {max} machines, its limit: contact the vendor to move or add an activation"
    )]
    LimitReached { serial: Serial, max: u32 },
    #[error(
        "package {package}'s model is encrypted, but the activation request carries no machine key (an older SDK made it): update the SDK and activate again"
    )]
    NoMachineKey { package: String },
    #[error("package {package}: {reason}")]
    ModelKey { package: String, reason: String },
}

impl IssuerError {
    /// A stable machine-readable name of the refusal, for the server's JSON
    /// `{code, message}`; `None` for the issuer's own failures (database,
    /// files), which are not the requester's fault.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            IssuerError::Request(_) => "bad_request",
            IssuerError::UnknownPackage { .. } => "unknown_package",
            IssuerError::UnknownSerial { .. } => "unknown_serial",
            IssuerError::Revoked { .. } => "revoked",
            IssuerError::WrongPackage { .. } => "wrong_package",
            IssuerError::SerialExpired { .. } => "serial_expired",
            IssuerError::LimitReached { .. } => "activation_limit",
            IssuerError::NoMachineKey { .. } => "old_sdk",
            IssuerError::Db(_)
            | IssuerError::Io { .. }
            | IssuerError::KeyFile { .. }
            | IssuerError::ReadableByOthers { .. }
            | IssuerError::ModelKey { .. }
            | IssuerError::BadDate { .. } => {
                return None;
            }
        })
    }

    /// Refuses the secret file at `path` (a private key, the database of
    /// serials) when its group or others may read or write it.
    pub fn check_private(path: &std::path::Path) -> Result<(), IssuerError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| IssuerError::io(path, e))?
            .permissions()
            .mode();
        match mode & 0o077 {
            0 => Ok(()),
            _ => Err(IssuerError::ReadableByOthers {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            }),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> IssuerError {
        IssuerError::Io {
            path: path.into(),
            source,
        }
    }
}

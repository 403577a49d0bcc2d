//! The issuer's SQLite database: registered packages with the model hashes
//! their licenses allow, minted serials, and the machines each serial is
//! activated on. Activations run in `BEGIN IMMEDIATE` transactions, so the
//! activation limit holds across threads and processes (the CLI and the
//! server may share one database).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use semiclass_licensing::fingerprint::Component;
use semiclass_licensing::{ActivationRequest, Fingerprint, LicensedModelKey, Serial};
use semiclass_manifest::package::VendorSealedKey;
use semiclass_package::Package;

use crate::error::IssuerError;
use semiclass_licensing::random_bytes;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS package_models (
    package_id TEXT NOT NULL REFERENCES packages(id),
    sha256 TEXT NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (package_id, sha256)
);
CREATE TABLE IF NOT EXISTS package_manifests (
    package_id TEXT NOT NULL REFERENCES packages(id),
    sha256 TEXT NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (package_id, sha256)
);
CREATE TABLE IF NOT EXISTS package_model_keys (
    package_id TEXT NOT NULL REFERENCES packages(id),
    model_sha256 TEXT NOT NULL,
    vendor_keys TEXT NOT NULL,
    PRIMARY KEY (package_id, model_sha256)
);
CREATE TABLE IF NOT EXISTS serials (
    serial TEXT PRIMARY KEY,
    package_id TEXT NOT NULL REFERENCES packages(id),
    max_activations INTEGER NOT NULL,
    expires INTEGER,
    created INTEGER NOT NULL,
    revoked INTEGER
);
CREATE TABLE IF NOT EXISTS activations (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL REFERENCES serials(serial),
    components TEXT NOT NULL,
    first_activated INTEGER NOT NULL,
    last_activated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS activations_by_serial ON activations(serial);
";

/// What minted serials allow.
#[derive(Debug, Clone)]
pub struct MintSpec {
    pub package_id: String,
    pub max_activations: u32,
    /// Unix seconds; `None` for serials that never expire.
    pub expires: Option<u64>,
}

/// One serial as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRecord {
    pub serial: Serial,
    pub package_id: String,
    pub activations: u32,
    pub max_activations: u32,
    pub expires: Option<u64>,
    pub revoked: Option<u64>,
}

/// What an accepted activation may put in the license.
#[derive(Debug, Clone)]
pub struct Grant {
    pub model_sha256s: Vec<String>,
    pub manifest_sha256s: Vec<String>,
    pub expires: Option<u64>,
    /// The machine as bound at its first activation: the license binds
    /// this, never what a later request says.
    pub machine: Fingerprint,
    /// Each encrypted model file's content key, sealed to the machine.
    pub model_keys: Vec<LicensedModelKey>,
}

/// Each encrypted model file (by sha256) with its content key as sealed to
/// the vendor's keys.
pub type VendorSealedModelKeys = Vec<(String, Vec<VendorSealedKey>)>;

/// An open issuer database.
pub struct IssuerDb {
    conn: Connection,
}

impl IssuerDb {
    /// Opens (creating if needed) the database at `path`. It holds every
    /// serial, which is all a buyer needs to activate: it is created
    /// readable by its owner only (SQLite gives its journal files the same
    /// mode), and refused when others may read it.
    pub fn open(path: &Path) -> Result<IssuerDb, IssuerError> {
        create_private(path)?;
        IssuerError::check_private(path)?;
        let conn = Connection::open(path)?;
        // Other writers hold the lock for milliseconds; wait rather than fail.
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(IssuerDb { conn })
    }

    /// Registers the package `package` (opened, so every file was checked),
    /// or adds its model and manifest to the registered package of the same
    /// id (a new release that existing serials may run).
    /// An encrypted model's content key is kept as the package seals it (to
    /// the vendor's keys): it is opened only to answer an activation.
    pub fn add_package(&self, package: &Package, now: u64) -> Result<(), IssuerError> {
        let manifest = &package.manifest;
        let model_sha256 = &manifest.files[&manifest.model.onnx];
        self.add_release(
            &manifest.package_id,
            model_sha256,
            &package.manifest_sha256,
            now,
        )?;
        if let Some(encryption) = &manifest.model.encryption {
            let sealed = serde_json::to_string(&encryption.vendor_keys).expect("keys serialize");
            self.conn.execute(
                "INSERT OR REPLACE INTO package_model_keys (package_id, model_sha256, vendor_keys) VALUES (?1, ?2, ?3)",
                params![manifest.package_id, model_sha256, sealed],
            )?;
        }
        Ok(())
    }

    /// Registers package `package_id` with the sha256 of a model and of the
    /// `manifest.json` its licenses let run (see [`IssuerDb::add_package`]).
    pub fn add_release(
        &self,
        package_id: &str,
        model_sha256: &str,
        manifest_sha256: &str,
        now: u64,
    ) -> Result<(), IssuerError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO packages (id, created) VALUES (?1, ?2)",
            params![package_id, now],
        )?;
        for (table, sha) in [
            ("package_models", model_sha256),
            ("package_manifests", manifest_sha256),
        ] {
            self.conn.execute(
                &format!(
                    "INSERT OR IGNORE INTO {table} (package_id, sha256, added) VALUES (?1, ?2, ?3)"
                ),
                params![package_id, sha, now],
            )?;
        }
        Ok(())
    }

    /// The model hashes a package's licenses allow.
    pub fn package_models(&self, package_id: &str) -> Result<Vec<String>, IssuerError> {
        package_models(&self.conn, package_id)
    }

    /// Mints `count` new random serials.
    pub fn mint(
        &mut self,
        spec: &MintSpec,
        count: usize,
        now: u64,
    ) -> Result<Vec<Serial>, IssuerError> {
        if self.package_models(&spec.package_id)?.is_empty() {
            return Err(IssuerError::UnknownPackage {
                package: spec.package_id.clone(),
            });
        }
        let serials: Vec<Serial> = (0..count)
            .map(|_| Serial::from_entropy(&random_bytes()))
            .collect();
        let tx = self.conn.transaction()?;
        for serial in &serials {
            tx.execute(
                "INSERT INTO serials (serial, package_id, max_activations, expires, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![serial.to_string(), spec.package_id, spec.max_activations, spec.expires, now],
            )?;
        }
        tx.commit()?;
        Ok(serials)
    }

    /// Revokes a serial: it can no longer be activated.
    pub fn revoke(&self, serial: Serial, now: u64) -> Result<(), IssuerError> {
        let changed = self.conn.execute(
            "UPDATE serials SET revoked = coalesce(revoked, ?2) WHERE serial = ?1",
            params![serial.to_string(), now],
        )?;
        if changed == 0 {
            return Err(IssuerError::UnknownSerial { serial });
        }
        Ok(())
    }

    /// Every serial, optionally of one package, oldest first.
    pub fn list(&self, package_id: Option<&str>) -> Result<Vec<SerialRecord>, IssuerError> {
        let mut statement = self.conn.prepare(
            "SELECT s.serial, s.package_id, (SELECT count(*) FROM activations a WHERE a.serial = s.serial),
                    s.max_activations, s.expires, s.revoked
             FROM serials s WHERE ?1 IS NULL OR s.package_id = ?1 ORDER BY s.created, s.serial",
        )?;
        let rows = statement.query_map(params![package_id], |row| {
            let text: String = row.get(0)?;
            let serial = text.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            Ok(SerialRecord {
                serial,
                package_id: row.get(1)?,
                activations: row.get(2)?,
                max_activations: row.get(3)?,
                expires: row.get(4)?,
                revoked: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the activation of `request`'s machine under its serial, or
    /// recognises the machine of an earlier activation activating again,
    /// which takes no new slot. A machine's binding is fixed at its first
    /// activation: a later request is the same machine only when both
    /// fingerprints match each other (see [`Fingerprint::same_machine`]),
    /// and it never extends or replaces the stored components, so requests
    /// cannot walk a binding from one machine to another. Every other
    /// request takes a slot of its own.
    ///
    /// `seal_model_keys` turns the package's vendor-sealed model keys into
    /// the machine's; it runs inside the claim's transaction, so a request
    /// it refuses (a package sealed to another vendor key, a request
    /// without a machine key) takes no slot.
    pub fn claim_activation(
        &mut self,
        request: &ActivationRequest,
        now: u64,
        seal_model_keys: impl FnOnce(
            VendorSealedModelKeys,
        ) -> Result<Vec<LicensedModelKey>, IssuerError>,
    ) -> Result<Grant, IssuerError> {
        let machine = request
            .machine()
            .map_err(semiclass_licensing::RequestError::from)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (max, expires) = check_serial(&tx, request, now)?;
        let activations = activations(&tx, request.serial)?;
        let known = activations.iter().find_map(|(id, bound)| {
            let bound = bound.as_ref()?;
            bound.same_machine(&machine).then(|| (*id, bound.clone()))
        });
        let machine = match known {
            Some((id, bound)) => {
                tx.execute(
                    "UPDATE activations SET last_activated = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                bound
            }
            None if activations.len() >= max as usize => {
                return Err(IssuerError::LimitReached {
                    serial: request.serial,
                    max,
                });
            }
            None => {
                let components =
                    serde_json::to_string(machine.components()).expect("components serialize");
                tx.execute(
                    "INSERT INTO activations (serial, components, first_activated, last_activated) VALUES (?1, ?2, ?3, ?3)",
                    params![request.serial.to_string(), components, now],
                )?;
                machine
            }
        };
        let model_sha256s = package_models(&tx, &request.package_id)?;
        let manifest_sha256s = package_manifests(&tx, &request.package_id)?;
        // Dropping the transaction on a refusal here rolls the claim back.
        let model_keys = seal_model_keys(package_model_keys(&tx, &request.package_id)?)?;
        tx.commit()?;
        Ok(Grant {
            model_sha256s,
            manifest_sha256s,
            expires,
            machine,
            model_keys,
        })
    }
}

/// Creates an empty file at `path` with mode 0600 unless one exists, so
/// that SQLite never creates the database with the umask's mode.
fn create_private(path: &Path) -> Result<(), IssuerError> {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(IssuerError::io(path, e)),
        _ => Ok(()),
    }
}

fn package_models(conn: &Connection, package_id: &str) -> Result<Vec<String>, IssuerError> {
    package_hashes(conn, "package_models", package_id)
}

fn package_manifests(conn: &Connection, package_id: &str) -> Result<Vec<String>, IssuerError> {
    package_hashes(conn, "package_manifests", package_id)
}

/// The sealed content keys of a package's encrypted model files. A row
/// that no longer parses (edited by hand) is a database error, not a
/// license without its key.
fn package_model_keys(
    conn: &Connection,
    package_id: &str,
) -> Result<Vec<(String, Vec<VendorSealedKey>)>, IssuerError> {
    let mut statement = conn.prepare(
        "SELECT model_sha256, vendor_keys FROM package_model_keys WHERE package_id = ?1 ORDER BY model_sha256",
    )?;
    let rows = statement.query_map(params![package_id], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut keys = Vec::new();
    for row in rows {
        let (sha, json) = row?;
        let sealed = serde_json::from_str(&json).map_err(|e| IssuerError::ModelKey {
            package: package_id.into(),
            reason: format!(
                "the stored key of model {sha} is damaged ({e}); add the package again"
            ),
        })?;
        keys.push((sha, sealed));
    }
    Ok(keys)
}

/// The sha256s `table` (of the schema's) records for a package, oldest first.
fn package_hashes(
    conn: &Connection,
    table: &str,
    package_id: &str,
) -> Result<Vec<String>, IssuerError> {
    let mut statement = conn.prepare(&format!(
        "SELECT sha256 FROM {table} WHERE package_id = ?1 ORDER BY added, sha256"
    ))?;
    let rows = statement.query_map(params![package_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The serial's activation limit and expiry, if it may be activated for
/// the requested package now.
fn check_serial(
    conn: &Connection,
    request: &ActivationRequest,
    now: u64,
) -> Result<(u32, Option<u64>), IssuerError> {
    let serial = request.serial;
    let row: Option<(String, u32, Option<u64>, Option<u64>)> = conn
        .query_row(
            "SELECT package_id, max_activations, expires, revoked FROM serials WHERE serial = ?1",
            params![serial.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let (licensed, max, expires, revoked) = row.ok_or(IssuerError::UnknownSerial { serial })?;
    if revoked.is_some() {
        return Err(IssuerError::Revoked { serial });
    }
    if licensed != request.package_id {
        return Err(IssuerError::WrongPackage {
            serial,
            licensed,
            requested: request.package_id.clone(),
        });
    }
    if let Some(expires) = expires.filter(|&expires| now >= expires) {
        return Err(IssuerError::SerialExpired { serial, expires });
    }
    Ok((max, expires))
}

/// The machines a serial is activated on: row id and fingerprint (`None`
/// for a row edited by hand so that it no longer parses: it matches no
/// machine but still takes its slot).
fn activations(
    conn: &Connection,
    serial: Serial,
) -> Result<Vec<(i64, Option<Fingerprint>)>, IssuerError> {
    let mut statement =
        conn.prepare("SELECT id, components FROM activations WHERE serial = ?1 ORDER BY id")?;
    let rows = statement.query_map(params![serial.to_string()], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut machines = Vec::new();
    for row in rows {
        let (id, json) = row?;
        let components: Option<Vec<Component>> = serde_json::from_str(&json).ok();
        machines.push((
            id,
            components.and_then(|c| Fingerprint::from_components(c).ok()),
        ));
    }
    Ok(machines)
}

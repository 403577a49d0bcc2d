//! The issuer's SQLite database: registered packages with the model hashes
//! their licenses allow, minted serials, and the machines each serial is
//! activated on. Activations run in `BEGIN IMMEDIATE` transactions, so the
//! activation limit holds across threads and processes (the CLI and the
//! server may share one database).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use semiclass_licensing::fingerprint::Component;
use semiclass_licensing::{ActivationRequest, Fingerprint, MachineBinding, Serial};

use crate::error::IssuerError;
use crate::keys::random_bytes;

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
    pub expires: Option<u64>,
}

/// An open issuer database.
pub struct IssuerDb {
    conn: Connection,
}

impl IssuerDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<IssuerDb, IssuerError> {
        let conn = Connection::open(path)?;
        // Other writers hold the lock for milliseconds; wait rather than fail.
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(IssuerDb { conn })
    }

    /// Registers a package, or adds model hashes to a registered one (a new
    /// model version that existing serials may run).
    pub fn add_package(
        &self,
        package_id: &str,
        model_sha256s: &[String],
        now: u64,
    ) -> Result<(), IssuerError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO packages (id, created) VALUES (?1, ?2)",
            params![package_id, now],
        )?;
        for sha in model_sha256s {
            self.conn.execute(
                "INSERT OR IGNORE INTO package_models (package_id, sha256, added) VALUES (?1, ?2, ?3)",
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
    /// refreshes it when the same machine (by the "most" rule) activates
    /// again, which takes no new slot.
    pub fn claim_activation(
        &mut self,
        request: &ActivationRequest,
        now: u64,
    ) -> Result<Grant, IssuerError> {
        let machine = request
            .machine()
            .map_err(semiclass_licensing::RequestError::from)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (max, expires) = check_serial(&tx, request, now)?;
        let activations = activations(&tx, request.serial)?;
        let components = serde_json::to_string(machine.components()).expect("components serialize");
        let same_machine = |bound: &Option<Fingerprint>| {
            bound
                .as_ref()
                .is_some_and(|b| MachineBinding::most(b).accepts(&machine))
        };
        match activations.iter().find(|(_, bound)| same_machine(bound)) {
            Some((id, _)) => tx.execute(
                "UPDATE activations SET components = ?2, last_activated = ?3 WHERE id = ?1",
                params![id, components, now],
            )?,
            None if activations.len() >= max as usize => {
                return Err(IssuerError::LimitReached { serial: request.serial, max });
            }
            None => tx.execute(
                "INSERT INTO activations (serial, components, first_activated, last_activated) VALUES (?1, ?2, ?3, ?3)",
                params![request.serial.to_string(), components, now],
            )?,
        };
        let model_sha256s = package_models(&tx, &request.package_id)?;
        tx.commit()?;
        Ok(Grant {
            model_sha256s,
            expires,
        })
    }
}

fn package_models(conn: &Connection, package_id: &str) -> Result<Vec<String>, IssuerError> {
    let mut statement = conn.prepare(
        "SELECT sha256 FROM package_models WHERE package_id = ?1 ORDER BY added, sha256",
    )?;
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

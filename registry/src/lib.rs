//! The run registry: one SQLite file that indexes runs, the checkpoints
//! they saved, evaluation tasks and the nicknames users give checkpoints.
//!
//! Run directories stay the source of truth and readable without this
//! crate (config, metrics, checkpoints with their own metadata); the
//! registry only remembers where they are and what was measured, so that
//! `semiclass runs`, `evals` and `@nickname` work across runs.
//!
//! Several processes (trainings, evaluations, `mark`) share the file: it is
//! opened in WAL mode with a busy timeout, and every write is one
//! `BEGIN IMMEDIATE` transaction, so writers queue instead of failing and a
//! writer killed mid-way leaves nothing behind. No libtorch here: the CLI,
//! the exporter and the server can all resolve `@nick`.

mod checkpoints;
mod datasets;
mod evals;
mod jobs;
pub mod location;
mod marks;
pub mod resolve;
pub mod resume_state;
mod runs;
mod schema;

#[cfg(test)]
mod concurrency_tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use checkpoints::{CheckpointRow, NewCheckpoint};
pub use datasets::DatasetRow;
pub use evals::{EvalRow, EvalSource, EvalStatus, NewEval};
pub use jobs::{JobRow, JobStatus, NewJob};
pub use marks::{MarkAction, MarkEvent, MarkRow, validate_nickname};
pub use resolve::{ResolveError, Resolved, resolve_checkpoint, sha256_file};
pub use runs::{NewRun, RunRow, RunStatus};

/// How long a writer waits for another process's transaction to end.
/// Registry transactions last milliseconds; a long wait means a stuck
/// process, and the error then says which file is locked.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{path}: cannot create the registry's folder: {source}; use --registry PATH or SEMICLASS_REGISTRY to put it elsewhere"
    )]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot open the registry: {source}; use --registry PATH or SEMICLASS_REGISTRY to put it elsewhere"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: registry: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path}: the registry's schema version is {found}, newer than this semiclass knows ({known}); use a newer semiclass, or another registry with --registry PATH"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("{0}")]
    Nickname(String),
    #[error("@{0}: no such nickname; `semiclass marks` lists them")]
    NoSuchMark(String),
}

/// An open registry file.
pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

impl Registry {
    /// Opens (creating it and its folder when missing) and migrates the
    /// registry at `path`.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_error = |source| RegistryError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        // The timeout first: switching to WAL itself waits for other writers.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        switch_to_wal(&conn).map_err(open_error)?;
        // WAL keeps committed transactions durable with NORMAL; FULL would
        // fsync on every commit and buys nothing against a killed process.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        let mut registry = Registry {
            conn,
            path: path.to_path_buf(),
        };
        schema::migrate(&mut registry.conn, schema::MIGRATIONS).map_err(|e| match e {
            schema::MigrateError::TooNew { found, known } => RegistryError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            },
            schema::MigrateError::Sql(source) => registry_sql(path, source),
        })?;
        Ok(registry)
    }

    /// The file this registry lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: the write lock is
    /// taken up front (so concurrent writers queue on the busy timeout
    /// instead of failing on upgrade), and everything `f` wrote is
    /// committed together or not at all.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, RegistryError> {
        let path = self.path.clone();
        let sql = |e| registry_sql(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let value = f(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(value)
    }

    /// The connection, for reads (each statement sees a consistent snapshot).
    fn reader(&self) -> &Connection {
        &self.conn
    }

    fn sql(&self, source: rusqlite::Error) -> RegistryError {
        registry_sql(&self.path, source)
    }
}

fn registry_sql(path: &Path, source: rusqlite::Error) -> RegistryError {
    RegistryError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

/// Seconds since the Unix epoch: the registry's clock.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A path as stored: the registry is text, and paths of the CLI's own
/// making are UTF-8.
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `PRAGMA journal_mode=WAL`, retried while another process holds the
/// lock. Two processes opening a new registry at once both take a read
/// lock and then both want the write lock to switch it: SQLite answers one
/// of them "database is locked" at once, without waiting on the busy
/// timeout (waiting could never end), so the wait is here.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

//! The registry's tables, created and upgraded by numbered migrations.
//!
//! `PRAGMA user_version` holds how many migrations a file has had. A
//! migration runs with the version check in one `BEGIN IMMEDIATE`
//! transaction, so two processes opening a new file never both apply it,
//! and a failing migration leaves the file as it was. Migrations are only
//! ever appended: a released one is never edited.

use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` brings a file from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// Runs, their checkpoints, evaluation tasks, marks and the marks' history.
const V1: &str = "
CREATE TABLE runs (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    run_dir  TEXT NOT NULL UNIQUE,
    mode     TEXT NOT NULL,
    config   TEXT NOT NULL,
    status   TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    pid      INTEGER,
    started  INTEGER NOT NULL,
    ended    INTEGER,
    message  TEXT
);
CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    run_id    INTEGER REFERENCES runs(id),
    model     TEXT NOT NULL,
    role      TEXT NOT NULL,
    stage     TEXT NOT NULL,
    epoch     INTEGER NOT NULL,
    step      INTEGER NOT NULL,
    metrics   TEXT NOT NULL,
    recorded  INTEGER NOT NULL,
    UNIQUE (path, sha256)
);
CREATE INDEX checkpoints_by_run ON checkpoints(run_id);
CREATE TABLE eval_tasks (
    id             INTEGER PRIMARY KEY,
    checkpoint_id  INTEGER NOT NULL REFERENCES checkpoints(id),
    dataset        TEXT NOT NULL,
    split          TEXT,
    list_file      TEXT,
    status         TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    metrics        TEXT,
    out_dir        TEXT,
    message        TEXT,
    started        INTEGER NOT NULL,
    ended          INTEGER,
    CHECK ((split IS NULL) <> (list_file IS NULL))
);
CREATE INDEX eval_tasks_by_checkpoint ON eval_tasks(checkpoint_id);
CREATE TABLE marks (
    nickname       TEXT PRIMARY KEY,
    checkpoint_id  INTEGER NOT NULL REFERENCES checkpoints(id),
    note           TEXT,
    marked         INTEGER NOT NULL
);
CREATE TABLE mark_history (
    id             INTEGER PRIMARY KEY,
    nickname       TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('mark', 'move', 'unmark')),
    checkpoint_id  INTEGER REFERENCES checkpoints(id),
    previous_id    INTEGER REFERENCES checkpoints(id),
    note           TEXT,
    at             INTEGER NOT NULL
);
CREATE INDEX mark_history_by_nickname ON mark_history(nickname);
";

/// The studio's datasets (with their latest check) and its job queue.
const V2: &str = "
CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    added       INTEGER NOT NULL,
    checked     INTEGER NOT NULL,
    check_pass  INTEGER NOT NULL,
    report      TEXT NOT NULL
);
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    args        TEXT NOT NULL,
    config      TEXT NOT NULL,
    run_dir     TEXT NOT NULL,
    log_path    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN
                    ('queued', 'running', 'finished', 'failed', 'cancelled', 'interrupted')),
    resume      INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    created     INTEGER NOT NULL,
    started     INTEGER,
    ended       INTEGER,
    message     TEXT
);
CREATE INDEX jobs_by_status ON jobs(status);
";

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub(crate) enum MigrateError {
    TooNew { found: u32, known: u32 },
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

/// Applies the migrations `conn` has not had yet, each in its own
/// transaction together with the version bump.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), MigrateError> {
    let known = migrations.len() as u32;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > known {
            return Err(MigrateError::TooNew {
                found: version,
                known,
            });
        }
        if version == known {
            return Ok(());
        }
        tx.execute_batch(migrations[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_new_file_gets_every_table_and_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as u32);
        assert_eq!(
            tables(&conn),
            [
                "checkpoints",
                "datasets",
                "eval_tasks",
                "jobs",
                "mark_history",
                "marks",
                "runs"
            ]
        );
        // Opening again changes nothing.
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as u32);
    }

    #[test]
    fn an_older_file_is_upgraded_and_keeps_its_rows() {
        let first = ["CREATE TABLE t (a INTEGER);"];
        let both = [first[0], "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x';"];
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &first).unwrap();
        conn.execute("INSERT INTO t (a) VALUES (7)", []).unwrap();
        migrate(&mut conn, &both).unwrap();
        assert_eq!(version(&conn), 2);
        let row: (i64, String) = conn
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(row, (7, "x".to_string()));
    }

    #[test]
    fn a_failing_migration_leaves_the_file_as_it_was() {
        let good = "CREATE TABLE t (a INTEGER);";
        // The second statement fails after the first created a table.
        let bad = "CREATE TABLE u (a INTEGER); INSERT INTO nowhere VALUES (1);";
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[good]).unwrap();
        assert!(matches!(
            migrate(&mut conn, &[good, bad]),
            Err(MigrateError::Sql(_))
        ));
        assert_eq!(version(&conn), 1);
        assert_eq!(tables(&conn), ["t"]);
    }

    #[test]
    fn a_file_from_a_newer_semiclass_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        match migrate(&mut conn, MIGRATIONS) {
            Err(MigrateError::TooNew { found: 99, known }) => {
                assert_eq!(known, MIGRATIONS.len() as u32);
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
}

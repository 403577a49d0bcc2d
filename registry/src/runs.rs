//! Training runs: one row per run directory.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use crate::{Registry, RegistryError, now, path_text};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    /// Stopped by SIGINT/SIGTERM with a resumable state.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> RunStatus {
        match text {
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Running,
        }
    }
}

/// A run as it starts.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The run directory (absolute); it identifies the run.
    pub run_dir: &'a Path,
    /// `large`, `small` or `joint`.
    pub mode: &'a str,
    /// The resolved configuration (YAML), as saved in the run directory.
    pub config: &'a str,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    /// The run directory's name.
    pub name: String,
    pub run_dir: PathBuf,
    pub mode: String,
    pub config: String,
    pub status: RunStatus,
    /// The process that last started (or resumed) it.
    pub pid: Option<u32>,
    /// Unix seconds.
    pub started: i64,
    pub ended: Option<i64>,
    /// Why it failed.
    pub message: Option<String>,
}

const COLUMNS: &str = "id, name, run_dir, mode, config, status, pid, started, ended, message";

fn run_row(row: &Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        name: row.get(1)?,
        run_dir: PathBuf::from(row.get::<_, String>(2)?),
        mode: row.get(3)?,
        config: row.get(4)?,
        status: RunStatus::parse(&row.get::<_, String>(5)?),
        pid: row.get(6)?,
        started: row.get(7)?,
        ended: row.get(8)?,
        message: row.get(9)?,
    })
}

impl Registry {
    /// Records a run starting, or a resumed run (same directory) running
    /// again; returns its id.
    pub fn begin_run(&mut self, run: &NewRun) -> Result<i64, RegistryError> {
        let name = run
            .run_dir
            .file_name()
            .map_or_else(|| path_text(run.run_dir), |n| n.to_string_lossy().into());
        let dir = path_text(run.run_dir);
        self.write(|tx| {
            tx.query_row(
                "INSERT INTO runs (name, run_dir, mode, config, status, pid, started)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6)
                 ON CONFLICT (run_dir) DO UPDATE SET
                     status = 'running', pid = excluded.pid, ended = NULL, message = NULL
                 RETURNING id",
                params![name, dir, run.mode, run.config, std::process::id(), now()],
                |row| row.get(0),
            )
        })
    }

    /// Records how run `id` ended (`message`: why it failed).
    pub fn end_run(
        &mut self,
        id: i64,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?2, ended = ?3, message = ?4 WHERE id = ?1",
                params![id, status.as_str(), now(), message],
            )
            .map(drop)
        })
    }

    /// Every run, the latest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM runs ORDER BY started DESC, id DESC");
        let query = || -> rusqlite::Result<Vec<RunRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([], run_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }

    /// The run with id `key`, or else the latest run whose directory is
    /// named `key`.
    pub fn run(&self, key: &str) -> Result<Option<RunRow>, RegistryError> {
        let by = |condition: &str, value: &dyn rusqlite::ToSql| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE {condition} ORDER BY started DESC, id DESC LIMIT 1"
            );
            self.reader()
                .query_row(&sql, [value], run_row)
                .optional()
                .map_err(|e| self.sql(e))
        };
        if let Ok(id) = key.parse::<i64>()
            && let Some(run) = by("id = ?1", &id)?
        {
            return Ok(Some(run));
        }
        by("name = ?1", &key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concurrency_tests::temp_registry;

    fn new_run<'a>(dir: &'a Path) -> NewRun<'a> {
        NewRun {
            run_dir: dir,
            mode: "large",
            config: "large:\n  epochs: 1\n",
        }
    }

    #[test]
    fn a_run_goes_from_running_to_its_end_and_a_resume_reuses_its_row() {
        let (_dir, mut reg) = temp_registry();
        let id = reg.begin_run(&new_run(Path::new("/runs/tiny"))).unwrap();
        let row = reg.run(&id.to_string()).unwrap().unwrap();
        assert_eq!(
            (row.name.as_str(), row.status),
            ("tiny", RunStatus::Running)
        );
        assert_eq!(row.pid, Some(std::process::id()));
        reg.end_run(id, RunStatus::Interrupted, None).unwrap();
        assert_eq!(
            reg.run("tiny").unwrap().unwrap().status,
            RunStatus::Interrupted
        );
        let again = reg.begin_run(&new_run(Path::new("/runs/tiny"))).unwrap();
        assert_eq!(again, id);
        reg.end_run(id, RunStatus::Failed, Some("disk full"))
            .unwrap();
        let row = reg.run("tiny").unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Failed);
        assert_eq!(row.message.as_deref(), Some("disk full"));
        assert!(row.ended.is_some());
        assert_eq!(reg.runs().unwrap().len(), 1);
        assert!(reg.run("99").unwrap().is_none());
        assert!(reg.run("other").unwrap().is_none());
    }
}

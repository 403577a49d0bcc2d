//! Checkpoint files: one row per (path, content) pair, so a `last`
//! checkpoint rewritten at every evaluation keeps the val metrics of each
//! version, and a nickname keeps pointing at the content it was given to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use crate::{Registry, RegistryError, now, path_text};

/// A checkpoint file as saved (or first seen).
#[derive(Debug, Clone)]
pub struct NewCheckpoint<'a> {
    /// Absolute path of the file.
    pub path: &'a Path,
    /// Of the file's bytes, lowercase hex.
    pub sha256: &'a str,
    /// The run that saved it, when known.
    pub run_id: Option<i64>,
    pub model: &'a str,
    /// `large` or `small`.
    pub role: &'a str,
    pub stage: &'a str,
    pub epoch: u64,
    pub step: u64,
    /// Validation metrics at saving time (`val_top1`, ...).
    pub metrics: &'a BTreeMap<String, f64>,
}

/// A checkpoint as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    pub id: i64,
    pub path: PathBuf,
    pub sha256: String,
    pub run_id: Option<i64>,
    pub model: String,
    pub role: String,
    pub stage: String,
    pub epoch: u64,
    pub step: u64,
    pub metrics: BTreeMap<String, f64>,
    /// Unix seconds when this version was recorded.
    pub recorded: i64,
}

pub(crate) const COLUMNS: &str = "c.id, c.path, c.sha256, c.run_id, c.model, c.role, c.stage, c.epoch, c.step, c.metrics, c.recorded";

/// Reads the [`COLUMNS`] starting at column `at`.
pub(crate) fn checkpoint_at(row: &Row, at: usize) -> rusqlite::Result<CheckpointRow> {
    let metrics: String = row.get(at + 9)?;
    Ok(CheckpointRow {
        id: row.get(at)?,
        path: PathBuf::from(row.get::<_, String>(at + 1)?),
        sha256: row.get(at + 2)?,
        run_id: row.get(at + 3)?,
        model: row.get(at + 4)?,
        role: row.get(at + 5)?,
        stage: row.get(at + 6)?,
        epoch: row.get(at + 7)?,
        step: row.get(at + 8)?,
        // Written by `record_checkpoint` from a map, so it parses; a row
        // edited by hand loses its metrics rather than the listing.
        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
        recorded: row.get(at + 10)?,
    })
}

fn checkpoint_row(row: &Row) -> rusqlite::Result<CheckpointRow> {
    checkpoint_at(row, 0)
}

impl Registry {
    /// Records a checkpoint file version; recording the same path and
    /// content again returns the existing row's id.
    pub fn record_checkpoint(&mut self, c: &NewCheckpoint) -> Result<i64, RegistryError> {
        let metrics = serde_json::to_string(c.metrics).expect("a map of numbers serialises");
        let path = path_text(c.path);
        self.write(|tx| {
            tx.query_row(
                "INSERT INTO checkpoints
                     (path, sha256, run_id, model, role, stage, epoch, step, metrics, recorded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (path, sha256) DO UPDATE SET
                     run_id = coalesce(checkpoints.run_id, excluded.run_id)
                 RETURNING id",
                params![
                    path,
                    c.sha256,
                    c.run_id,
                    c.model,
                    c.role,
                    c.stage,
                    c.epoch,
                    c.step,
                    metrics,
                    now()
                ],
                |row| row.get(0),
            )
        })
    }

    /// The checkpoint with this id.
    pub fn checkpoint(&self, id: i64) -> Result<Option<CheckpointRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM checkpoints c WHERE c.id = ?1");
        self.reader()
            .query_row(&sql, [id], checkpoint_row)
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every recorded version of the file at `path`, the latest first.
    pub fn checkpoints_at(&self, path: &Path) -> Result<Vec<CheckpointRow>, RegistryError> {
        self.checkpoints_where("c.path = ?1", &path_text(path))
    }

    /// The checkpoints run `run_id` saved, in the order it saved them.
    pub fn checkpoints_of_run(&self, run_id: i64) -> Result<Vec<CheckpointRow>, RegistryError> {
        let mut rows = self.checkpoints_where("c.run_id = ?1", &run_id)?;
        rows.reverse();
        Ok(rows)
    }

    /// Every recorded checkpoint version, the latest first (the studio's
    /// pickers).
    pub fn checkpoints(&self) -> Result<Vec<CheckpointRow>, RegistryError> {
        self.checkpoints_where("?1", &true)
    }

    fn checkpoints_where(
        &self,
        condition: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Vec<CheckpointRow>, RegistryError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM checkpoints c WHERE {condition} ORDER BY c.recorded DESC, c.id DESC"
        );
        let query = || -> rusqlite::Result<Vec<CheckpointRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([value], checkpoint_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::concurrency_tests::temp_registry;

    /// A checkpoint of `path` with content `sha` and val top-1 `top1`.
    pub(crate) fn checkpoint<'a>(
        path: &'a Path,
        sha: &'a str,
        metrics: &'a BTreeMap<String, f64>,
    ) -> NewCheckpoint<'a> {
        NewCheckpoint {
            path,
            sha256: sha,
            run_id: None,
            model: "resnet18",
            role: "large",
            stage: "supervised",
            epoch: 1,
            step: 4,
            metrics,
        }
    }

    #[test]
    fn each_content_of_a_path_is_one_version_and_recording_twice_is_idempotent() {
        let (_dir, mut reg) = temp_registry();
        let path = Path::new("/runs/tiny/checkpoints/last.safetensors");
        let m1 = BTreeMap::from([("val_top1".to_string(), 0.5)]);
        let m2 = BTreeMap::from([("val_top1".to_string(), 0.75)]);
        let a = reg.record_checkpoint(&checkpoint(path, "aa", &m1)).unwrap();
        let b = reg.record_checkpoint(&checkpoint(path, "bb", &m2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            reg.record_checkpoint(&checkpoint(path, "aa", &m1)).unwrap(),
            a
        );
        let versions = reg.checkpoints_at(path).unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].sha256, "bb");
        assert_eq!(versions[0].metrics["val_top1"], 0.75);
        assert_eq!(reg.checkpoint(a).unwrap().unwrap().sha256, "aa");
        assert!(reg.checkpoint(999).unwrap().is_none());
        let other = Path::new("/runs/tiny/checkpoints/best.safetensors");
        let c = reg
            .record_checkpoint(&checkpoint(other, "cc", &m1))
            .unwrap();
        let all: Vec<i64> = reg.checkpoints().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(all, [c, b, a]);
    }
}

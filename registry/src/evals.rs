//! Evaluation tasks: a checkpoint measured on a dataset split or list.

use std::path::{Path, PathBuf};

use rusqlite::{Row, params};

use crate::checkpoints::{self, CheckpointRow};
use crate::{Registry, RegistryError, now, path_text};

/// What was evaluated on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalSource {
    /// A list of the dataset folder: `val` or `test`.
    Split(String),
    /// A custom list file (absolute path).
    List(PathBuf),
}

impl std::fmt::Display for EvalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalSource::Split(split) => write!(f, "{split}"),
            EvalSource::List(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where an evaluation task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalStatus {
    Running,
    Finished,
    Failed,
}

/// An evaluation task as it starts.
#[derive(Debug, Clone)]
pub struct NewEval<'a> {
    pub checkpoint_id: i64,
    /// The dataset folder (absolute).
    pub dataset: &'a Path,
    pub source: &'a EvalSource,
    /// Where its report goes.
    pub out_dir: &'a Path,
}

/// An evaluation task as recorded, with its checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub id: i64,
    pub checkpoint: CheckpointRow,
    pub dataset: PathBuf,
    pub source: EvalSource,
    pub status: EvalStatus,
    /// The report's summary (JSON), once finished.
    pub metrics: Option<serde_json::Value>,
    pub out_dir: Option<PathBuf>,
    /// Why it failed.
    pub message: Option<String>,
    pub started: i64,
    pub ended: Option<i64>,
}

fn eval_row(row: &Row) -> rusqlite::Result<EvalRow> {
    let split: Option<String> = row.get(2)?;
    let list: Option<String> = row.get(3)?;
    let status: String = row.get(4)?;
    let metrics: Option<String> = row.get(5)?;
    Ok(EvalRow {
        id: row.get(0)?,
        dataset: PathBuf::from(row.get::<_, String>(1)?),
        source: match (split, list) {
            (Some(split), _) => EvalSource::Split(split),
            (None, list) => EvalSource::List(PathBuf::from(list.unwrap_or_default())),
        },
        status: match status.as_str() {
            "finished" => EvalStatus::Finished,
            "failed" => EvalStatus::Failed,
            _ => EvalStatus::Running,
        },
        metrics: metrics.and_then(|m| serde_json::from_str(&m).ok()),
        out_dir: row.get::<_, Option<String>>(6)?.map(PathBuf::from),
        message: row.get(7)?,
        started: row.get(8)?,
        ended: row.get(9)?,
        checkpoint: checkpoints::checkpoint_at(row, 10)?,
    })
}

impl Registry {
    /// Records an evaluation task starting; returns its id.
    pub fn begin_eval(&mut self, e: &NewEval) -> Result<i64, RegistryError> {
        let (split, list) = match e.source {
            EvalSource::Split(split) => (Some(split.clone()), None),
            EvalSource::List(path) => (None, Some(path_text(path))),
        };
        let (dataset, out_dir) = (path_text(e.dataset), path_text(e.out_dir));
        self.write(|tx| {
            tx.query_row(
                "INSERT INTO eval_tasks
                     (checkpoint_id, dataset, split, list_file, status, out_dir, started)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6) RETURNING id",
                params![e.checkpoint_id, dataset, split, list, out_dir, now()],
                |row| row.get(0),
            )
        })
    }

    /// Records task `id` finished with `metrics` (the report's summary).
    pub fn finish_eval(
        &mut self,
        id: i64,
        metrics: &serde_json::Value,
    ) -> Result<(), RegistryError> {
        self.end_eval(id, "finished", Some(metrics.to_string()), None)
    }

    /// Records task `id` failed, and why.
    pub fn fail_eval(&mut self, id: i64, message: &str) -> Result<(), RegistryError> {
        self.end_eval(id, "failed", None, Some(message))
    }

    fn end_eval(
        &mut self,
        id: i64,
        status: &str,
        metrics: Option<String>,
        message: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE eval_tasks SET status = ?2, metrics = ?3, message = ?4, ended = ?5
                 WHERE id = ?1",
                params![id, status, metrics, message, now()],
            )
            .map(drop)
        })
    }

    /// Evaluation tasks, the latest first; only those of the checkpoint
    /// file at `path` (every version of it) when given.
    pub fn evals(&self, path: Option<&Path>) -> Result<Vec<EvalRow>, RegistryError> {
        self.evals_where("?1 IS NULL OR c.path = ?1", &path.map(path_text))
    }

    /// The evaluation task with this id.
    pub fn eval(&self, id: i64) -> Result<Option<EvalRow>, RegistryError> {
        Ok(self.evals_where("e.id = ?1", &id)?.into_iter().next())
    }

    fn evals_where(
        &self,
        condition: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Vec<EvalRow>, RegistryError> {
        let columns = checkpoints::COLUMNS;
        let sql = format!(
            "SELECT e.id, e.dataset, e.split, e.list_file, e.status, e.metrics, e.out_dir,
                    e.message, e.started, e.ended, {columns}
             FROM eval_tasks e JOIN checkpoints c ON c.id = e.checkpoint_id
             WHERE {condition}
             ORDER BY e.started DESC, e.id DESC"
        );
        let query = || -> rusqlite::Result<Vec<EvalRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([value], eval_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checkpoints::tests::checkpoint;
    use crate::concurrency_tests::temp_registry;

    #[test]
    fn an_eval_task_runs_then_finishes_or_fails_and_lists_by_checkpoint() {
        let (_dir, mut reg) = temp_registry();
        let metrics = BTreeMap::new();
        let (a_path, b_path) = (Path::new("/c/a.safetensors"), Path::new("/c/b.safetensors"));
        let a = reg
            .record_checkpoint(&checkpoint(a_path, "aa", &metrics))
            .unwrap();
        let b = reg
            .record_checkpoint(&checkpoint(b_path, "bb", &metrics))
            .unwrap();
        let test = EvalSource::Split("test".into());
        let list = EvalSource::List("/data/extra.txt".into());
        let new = |checkpoint_id, source| NewEval {
            checkpoint_id,
            dataset: Path::new("/data"),
            source,
            out_dir: Path::new("/out"),
        };
        let first = reg.begin_eval(&new(a, &test)).unwrap();
        let second = reg.begin_eval(&new(a, &list)).unwrap();
        reg.begin_eval(&new(b, &test)).unwrap();
        let summary = serde_json::json!({"top1": 0.9});
        reg.finish_eval(first, &summary).unwrap();
        reg.fail_eval(second, "images/x.png: does not decode")
            .unwrap();
        let of_a = reg.evals(Some(a_path)).unwrap();
        assert_eq!(of_a.len(), 2);
        let by_id = |id| of_a.iter().find(|e| e.id == id).unwrap();
        assert_eq!(by_id(first).status, EvalStatus::Finished);
        assert_eq!(by_id(first).metrics, Some(summary));
        assert_eq!(by_id(first).source, test);
        assert_eq!(by_id(second).status, EvalStatus::Failed);
        assert_eq!(by_id(second).source, list);
        assert!(by_id(second).message.as_deref().unwrap().contains("decode"));
        assert_eq!(by_id(second).checkpoint.sha256, "aa");
        assert_eq!(reg.evals(None).unwrap().len(), 3);
        assert_eq!(reg.eval(second).unwrap().as_ref(), Some(by_id(second)));
        assert_eq!(reg.eval(999).unwrap(), None);
    }
}

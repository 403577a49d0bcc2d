//! The studio's job queue: what to run, in order, and how each run ended.
//! Kept here so it outlives the studio: a job that was running when the
//! studio stopped is found on the next start and shown as interrupted.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use crate::{Registry, RegistryError, now, path_text};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Finished,
    Failed,
    /// Stopped on request, with a resumable state when it had started.
    Cancelled,
    /// Its process ended without the studio (the studio was stopped or
    /// killed); resumable.
    Interrupted,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> JobStatus {
        match text {
            "queued" => JobStatus::Queued,
            "finished" => JobStatus::Finished,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            "interrupted" => JobStatus::Interrupted,
            _ => JobStatus::Running,
        }
    }

    /// Whether the job may be queued again to continue where it stopped.
    pub fn is_resumable(self) -> bool {
        matches!(
            self,
            JobStatus::Cancelled | JobStatus::Interrupted | JobStatus::Failed
        )
    }
}

/// A job as it is queued.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// What it does: `train`.
    pub kind: &'a str,
    /// What a person reads in the list.
    pub title: &'a str,
    /// The `semiclass` arguments of a fresh start.
    pub args: &'a [String],
    /// The resolved configuration (YAML).
    pub config: &'a str,
    /// The run directory the job trains into.
    pub run_dir: &'a Path,
    /// Where its output goes.
    pub log_path: &'a Path,
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub title: String,
    pub args: Vec<String>,
    pub config: String,
    pub run_dir: PathBuf,
    pub log_path: PathBuf,
    pub status: JobStatus,
    /// The next start continues from the run's latest resume state.
    pub resume: bool,
    /// The process of its latest start.
    pub pid: Option<u32>,
    /// Unix seconds.
    pub created: i64,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    /// Why it failed or stopped.
    pub message: Option<String>,
}

const COLUMNS: &str = "id, kind, title, args, config, run_dir, log_path, status, resume, pid, created, started, ended, message";

fn job_row(row: &Row) -> rusqlite::Result<JobRow> {
    let args: String = row.get(3)?;
    Ok(JobRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        title: row.get(2)?,
        args: serde_json::from_str(&args).unwrap_or_default(),
        config: row.get(4)?,
        run_dir: PathBuf::from(row.get::<_, String>(5)?),
        log_path: PathBuf::from(row.get::<_, String>(6)?),
        status: JobStatus::parse(&row.get::<_, String>(7)?),
        resume: row.get(8)?,
        pid: row.get(9)?,
        created: row.get(10)?,
        started: row.get(11)?,
        ended: row.get(12)?,
        message: row.get(13)?,
    })
}

impl Registry {
    /// Puts a job at the end of the queue; returns its id.
    pub fn enqueue_job(&mut self, job: &NewJob) -> Result<i64, RegistryError> {
        let args = serde_json::to_string(job.args).expect("strings serialise");
        self.write(|tx| {
            tx.query_row(
                "INSERT INTO jobs (kind, title, args, config, run_dir, log_path, status, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7) RETURNING id",
                params![
                    job.kind,
                    job.title,
                    args,
                    job.config,
                    path_text(job.run_dir),
                    path_text(job.log_path),
                    now()
                ],
                |row| row.get(0),
            )
        })
    }

    /// Every job, the latest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>, RegistryError> {
        self.select_jobs("1 ORDER BY id DESC")
    }

    /// The jobs with this status, the oldest first.
    pub fn jobs_with_status(&self, status: JobStatus) -> Result<Vec<JobRow>, RegistryError> {
        let condition = format!("status = '{}' ORDER BY id", status.as_str());
        self.select_jobs(&condition)
    }

    /// The job with this id.
    pub fn job(&self, id: i64) -> Result<Option<JobRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
        self.reader()
            .query_row(&sql, [id], job_row)
            .optional()
            .map_err(|e| self.sql(e))
    }

    fn select_jobs(&self, condition: &str) -> Result<Vec<JobRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE {condition}");
        let query = || -> rusqlite::Result<Vec<JobRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([], job_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }

    /// Moves job `id` from `from` to `to` (with `message`); false when it
    /// was not in `from` (another request got there first).
    pub fn move_job(
        &mut self,
        id: i64,
        from: JobStatus,
        to: JobStatus,
        message: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let ends = !matches!(to, JobStatus::Queued | JobStatus::Running);
        let changed = self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET status = ?3, message = ?4,
                     started = CASE WHEN ?3 = 'running' THEN ?5 ELSE started END,
                     ended = CASE WHEN ?6 THEN ?5 ELSE NULL END
                 WHERE id = ?1 AND status = ?2",
                params![id, from.as_str(), to.as_str(), message, now(), ends],
            )
        })?;
        Ok(changed == 1)
    }

    /// Records the process of a running job.
    pub fn set_job_pid(&mut self, id: i64, pid: u32) -> Result<(), RegistryError> {
        self.write(|tx| {
            tx.execute("UPDATE jobs SET pid = ?2 WHERE id = ?1", params![id, pid])
                .map(drop)
        })
    }

    /// Queues a stopped job again; its next start resumes it. False when
    /// it was not resumable.
    pub fn requeue_job(&mut self, id: i64) -> Result<bool, RegistryError> {
        let changed = self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET status = 'queued', resume = 1, message = NULL, ended = NULL
                 WHERE id = ?1 AND status IN ('cancelled', 'interrupted', 'failed')",
                [id],
            )
        })?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concurrency_tests::temp_registry;

    fn new_job<'a>(args: &'a [String]) -> NewJob<'a> {
        NewJob {
            kind: "train",
            title: "joint on flowers",
            args,
            config: "large: {}\n",
            run_dir: Path::new("/runs/job-1"),
            log_path: Path::new("/runs/job-1.log"),
        }
    }

    #[test]
    fn a_job_moves_through_the_queue_only_from_the_status_it_is_in() {
        let (_dir, mut reg) = temp_registry();
        let args = vec!["train".to_string(), "--mode".into(), "joint".into()];
        let id = reg.enqueue_job(&new_job(&args)).unwrap();
        let queued = reg.jobs_with_status(JobStatus::Queued).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].args, args);
        assert!(!queued[0].resume);
        assert!(
            reg.move_job(id, JobStatus::Queued, JobStatus::Running, None)
                .unwrap()
        );
        // A second claim of the same job fails: it runs once.
        assert!(
            !reg.move_job(id, JobStatus::Queued, JobStatus::Running, None)
                .unwrap()
        );
        reg.set_job_pid(id, 42).unwrap();
        assert!(
            !reg.requeue_job(id).unwrap(),
            "a running job is not requeued"
        );
        let stopped = reg
            .move_job(
                id,
                JobStatus::Running,
                JobStatus::Interrupted,
                Some("studio stopped"),
            )
            .unwrap();
        assert!(stopped);
        let row = reg.job(id).unwrap().unwrap();
        assert_eq!((row.status, row.pid), (JobStatus::Interrupted, Some(42)));
        assert!(row.started.is_some() && row.ended.is_some());
        assert!(reg.requeue_job(id).unwrap());
        let row = reg.job(id).unwrap().unwrap();
        assert_eq!(
            (row.status, row.resume, row.ended),
            (JobStatus::Queued, true, None)
        );
        assert_eq!(reg.jobs().unwrap().len(), 1);
    }
}

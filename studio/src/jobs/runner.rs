//! Starting queued jobs as child processes, watching them end, cancelling
//! and resuming them, and finding the jobs a stopped studio left running.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semiclass_registry::{JobRow, JobStatus, NewJob, Registry};
use tokio::sync::Notify;

use super::state_files::newest_state;
use crate::error::StudioError;
use crate::state::StudioOptions;
use crate::train_form::ResolvedTraining;

/// How long the queue waits between looks when nothing wakes it.
const QUEUE_POLL: Duration = Duration::from_secs(1);
/// How long stopping the studio waits for its jobs to save their state.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// What the studio says about a job it found running without it.
const ORPHANED: &str =
    "the studio stopped while it ran; Resume continues from its last saved state";

/// A `semiclass` command to run as a job.
#[derive(Debug, Clone)]
pub struct CommandJob {
    /// `train`, `eval`, `export`: what the job pages show it as.
    pub kind: &'static str,
    pub title: String,
    /// The command's arguments, without the global `--registry`.
    pub args: Vec<String>,
    /// What the job page shows as its configuration.
    pub config: String,
    /// The folder the command writes (a run, a report, a package folder).
    pub out_dir: PathBuf,
    /// Unique: names the job's log file.
    pub name: String,
}

/// Nanoseconds since 1970: unique enough to name a job's files.
pub fn unique_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A job this studio started and has not seen end.
#[derive(Debug, Default)]
struct Running {
    /// 0 until the process exists.
    pid: AtomicU32,
    cancel: AtomicBool,
}

/// Runs the queue.
#[derive(Debug)]
pub struct JobRunner {
    program: PathBuf,
    registry: PathBuf,
    data_dir: PathBuf,
    max_running: usize,
    running: Mutex<HashMap<i64, Arc<Running>>>,
    wake: Notify,
}

impl JobRunner {
    pub fn new(options: &StudioOptions, data_dir: &Path) -> Arc<JobRunner> {
        Arc::new(JobRunner {
            program: options.program.clone(),
            registry: options.registry.clone(),
            data_dir: data_dir.to_path_buf(),
            max_running: options.max_running.max(1),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    fn registry(&self) -> Result<Registry, StudioError> {
        Ok(Registry::open(&self.registry)?)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a checked training; returns the job's id.
    pub fn enqueue_training(&self, training: &ResolvedTraining) -> Result<i64, StudioError> {
        let name = format!("{}-{}", training.mode, unique_stamp());
        let runs = self.data_dir.join("runs");
        let mut config = training.config.clone();
        config.run.dir = runs.clone();
        config.run.name = Some(name.clone());
        let mut args = vec!["train".to_string(), "--mode".into(), training.mode.clone()];
        args.extend(["--data".into(), training.dataset.display().to_string()]);
        let own = [
            format!("run.dir={}", runs.display()),
            format!("run.name={name}"),
        ];
        for o in own.iter().chain(&training.overrides) {
            args.extend(["-o".to_string(), o.clone()]);
        }
        self.enqueue(&CommandJob {
            kind: "train",
            title: format!("{} on {}", training.mode, training.dataset.display()),
            args,
            config: semiclass_config::to_yaml(&config),
            out_dir: runs.join(&name),
            name,
        })
    }

    /// Queues a `semiclass` command (its arguments after the global
    /// `--registry`); returns the job's id.
    pub fn enqueue(&self, job: &CommandJob) -> Result<i64, StudioError> {
        let mut args = self.global_args();
        args.extend(job.args.iter().cloned());
        let id = self.registry()?.enqueue_job(&NewJob {
            kind: job.kind,
            title: &job.title,
            args: &args,
            config: &job.config,
            run_dir: &job.out_dir,
            log_path: &self.data_dir.join("logs").join(format!("{}.log", job.name)),
        })?;
        self.wake.notify_one();
        Ok(id)
    }

    fn global_args(&self) -> Vec<String> {
        vec!["--registry".into(), self.registry.display().to_string()]
    }

    /// Looks at the queue whenever something changes (and every second):
    /// until the studio stops.
    pub async fn run_queue(self: Arc<Self>) {
        loop {
            let runner = self.clone();
            match tokio::task::spawn_blocking(move || runner.tick()).await {
                Ok(Err(e)) => tracing::error!("job queue: {e}"),
                Err(e) => tracing::error!("job queue: {e}"),
                Ok(Ok(())) => {}
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(QUEUE_POLL) => {}
            }
        }
    }

    /// One look at the queue: recover orphans, start what fits.
    pub fn tick(self: &Arc<Self>) -> Result<(), StudioError> {
        let mut registry = self.registry()?;
        self.recover_orphans(&mut registry)?;
        while self.running().len() < self.max_running {
            let Some(job) = registry
                .jobs_with_status(JobStatus::Queued)?
                .into_iter()
                .next()
            else {
                break;
            };
            self.start(&mut registry, job)?;
        }
        Ok(())
    }

    /// A job recorded as running that this studio did not start ran under
    /// a studio that stopped; once its process is gone it is interrupted.
    fn recover_orphans(&self, registry: &mut Registry) -> Result<(), StudioError> {
        for job in registry.jobs_with_status(JobStatus::Running)? {
            let ours = self.running().contains_key(&job.id);
            if !ours && !job.pid.is_some_and(|pid| self.runs_a_job(pid)) {
                registry.move_job(
                    job.id,
                    JobStatus::Running,
                    JobStatus::Interrupted,
                    Some(ORPHANED),
                )?;
            }
        }
        Ok(())
    }

    fn start(self: &Arc<Self>, registry: &mut Registry, job: JobRow) -> Result<(), StudioError> {
        let entry = Arc::new(Running::default());
        // In the map before the registry says running, so that no look at
        // the queue takes it for an orphan.
        self.running().insert(job.id, entry.clone());
        if !registry.move_job(job.id, JobStatus::Queued, JobStatus::Running, None)? {
            self.running().remove(&job.id);
            return Ok(());
        }
        let prepared = self
            .arguments(&job)
            .and_then(|args| Ok((args, open_log(&job.log_path)?)));
        let (args, log) = match prepared {
            Ok(prepared) => prepared,
            Err(why) => {
                self.finish(job.id, JobStatus::Failed, Some(&why));
                return Ok(());
            }
        };
        let runner = self.clone();
        let training = job.kind == "train";
        std::thread::Builder::new()
            .name(format!("job-{}", job.id))
            .spawn(move || runner.supervise((job.id, training), &args, log, &entry))
            .map_err(|e| StudioError::Internal(format!("cannot start a thread for a job: {e}")))?;
        Ok(())
    }

    /// The arguments of this start: the job's own, or for a training
    /// queued again, `train --resume` from the run's latest state (any
    /// other command simply runs again).
    fn arguments(&self, job: &JobRow) -> Result<Vec<String>, String> {
        if !job.resume || job.kind != "train" {
            return Ok(job.args.clone());
        }
        let state = newest_state(&job.run_dir).ok_or_else(|| {
            format!(
                "nothing to resume: {} holds no *-last.state.safetensors (the job stopped before its first save); queue a new training",
                job.run_dir.display()
            )
        })?;
        let mode = job
            .args
            .iter()
            .skip_while(|a| *a != "--mode")
            .nth(1)
            .ok_or("the job's arguments have no --mode")?;
        let mut args = self.global_args();
        args.extend(["train", "--mode", mode, "--resume"].map(String::from));
        args.push(state.display().to_string());
        Ok(args)
    }

    /// On the job's own thread: runs the process to its end and records
    /// how it ended. The child gets SIGTERM if this thread dies with the
    /// studio (PR_SET_PDEATHSIG), which makes `semiclass train` save a
    /// resumable state.
    fn supervise(&self, (id, training): (i64, bool), args: &[String], log: File, entry: &Running) {
        let status = match self.spawn(args, log) {
            Ok(mut child) => {
                entry.pid.store(child.id(), Ordering::SeqCst);
                if let Err(e) = self
                    .registry()
                    .and_then(|mut r| Ok(r.set_job_pid(id, child.id())?))
                {
                    tracing::error!("job {id}: {e}");
                }
                if entry.cancel.load(Ordering::SeqCst) {
                    signal(child.id(), libc::SIGTERM);
                }
                child
                    .wait()
                    .map_err(|e| format!("waiting for the job: {e}"))
            }
            Err(e) => Err(format!("cannot start {}: {e}", self.program.display())),
        };
        let (to, message) = outcome(status, entry.cancel.load(Ordering::SeqCst), training);
        self.finish(id, to, message.as_deref());
    }

    fn spawn(&self, args: &[String], log: File) -> std::io::Result<std::process::Child> {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C in the studio's terminal stops
            // the studio, which then stops its jobs in order.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        command.spawn()
    }

    fn finish(&self, id: i64, to: JobStatus, message: Option<&str>) {
        let recorded = self
            .registry()
            .and_then(|mut r| Ok(r.move_job(id, JobStatus::Running, to, message)?));
        if let Err(e) = recorded {
            tracing::error!("job {id}: cannot record that it ended: {e}");
        }
        self.running().remove(&id);
        self.wake.notify_one();
    }

    /// Cancels a queued job, or stops a running one (SIGTERM: it saves a
    /// resumable state first).
    pub fn cancel(&self, id: i64) -> Result<(), StudioError> {
        let mut registry = self.registry()?;
        let job = find(&registry, id)?;
        match job.status {
            JobStatus::Queued => {
                registry.move_job(
                    id,
                    JobStatus::Queued,
                    JobStatus::Cancelled,
                    Some("cancelled before it started"),
                )?;
                Ok(())
            }
            JobStatus::Running => {
                let entry = self.running().get(&id).cloned().ok_or_else(|| {
                    StudioError::Conflict(format!(
                        "job {id} was started by a studio that stopped; it is being recovered"
                    ))
                })?;
                entry.cancel.store(true, Ordering::SeqCst);
                let pid = entry.pid.load(Ordering::SeqCst);
                if pid != 0 {
                    signal(pid, libc::SIGTERM);
                }
                Ok(())
            }
            other => Err(StudioError::Conflict(format!(
                "job {id} is {}: only queued or running jobs can be cancelled",
                other.as_str()
            ))),
        }
    }

    /// Queues a cancelled, interrupted or failed job again, to continue
    /// from its run's latest state.
    pub fn resume(&self, id: i64) -> Result<(), StudioError> {
        let mut registry = self.registry()?;
        let job = find(&registry, id)?;
        if !registry.requeue_job(id)? {
            return Err(StudioError::Conflict(format!(
                "job {id} is {}: only cancelled, interrupted or failed jobs resume",
                job.status.as_str()
            )));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Stops every running job (SIGTERM: each saves a resumable state and
    /// ends as interrupted) and waits for them; returns how many there were.
    pub fn stop_all(&self) -> usize {
        let pids: Vec<u32> = self
            .running()
            .values()
            .map(|r| r.pid.load(Ordering::SeqCst))
            .collect();
        for &pid in pids.iter().filter(|&&p| p != 0) {
            signal(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        while !self.running().is_empty() && started.elapsed() < STOP_WAIT {
            std::thread::sleep(Duration::from_millis(100));
        }
        pids.len()
    }
}

pub fn find(registry: &Registry, id: i64) -> Result<JobRow, StudioError> {
    registry
        .job(id)?
        .ok_or_else(|| StudioError::NotFound(format!("no job {id}; the Jobs page lists them")))
}

/// How a process's end is recorded; `training`: a `semiclass train`,
/// which saves a state to resume from when stopped.
fn outcome(
    status: Result<ExitStatus, String>,
    cancelled: bool,
    training: bool,
) -> (JobStatus, Option<String>) {
    let resume = if training {
        "Resume continues from its last saved state"
    } else {
        "Resume runs it again"
    };
    match status {
        Ok(s) if s.success() => (JobStatus::Finished, None),
        Ok(_) if cancelled => (JobStatus::Cancelled, Some(format!("cancelled; {resume}"))),
        // 130: `semiclass train` saved its state after SIGINT/SIGTERM.
        Ok(s) if s.code() == Some(130) || s.code().is_none() => (
            JobStatus::Interrupted,
            Some(format!("stopped by a signal; {resume}")),
        ),
        Ok(s) => (
            JobStatus::Failed,
            Some(format!(
                "semiclass exited with {s}; the log's last lines say why"
            )),
        ),
        Err(why) => (JobStatus::Failed, Some(why)),
    }
}

fn open_log(path: &Path) -> Result<File, String> {
    let fail = |e: std::io::Error| format!("{}: cannot open the job's log: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    // Appended to: a resumed job's log continues the first start's.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of a process this studio started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

impl JobRunner {
    /// Whether `pid` is still a job of this registry: alive, and (where
    /// /proc tells) started with `--registry` this registry. A pid the
    /// system gave to another program since would otherwise keep a dead
    /// job "running" for ever.
    fn runs_a_job(&self, pid: u32) -> bool {
        process_alive(pid) && registry_of(pid).is_none_or(|r| same_file(&r, &self.registry))
    }
}

/// The path after `--registry` in `/proc/PID/cmdline`: `Some("")` when
/// the process was started without one, `None` when /proc cannot tell
/// (no /proc, or the process ended in between).
fn registry_of(pid: u32) -> Option<PathBuf> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    let after = words
        .windows(2)
        .find(|w| w[0] == b"--registry")
        .map_or(&b""[..], |w| w[1]);
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(after)))
}

/// The same file under two spellings (links, `..`), or the same path.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether a process with this pid exists (signal 0 checks, sends nothing).
fn process_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_reused_pid_is_not_taken_for_a_job() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("registry.sqlite");
        std::fs::write(&registry, b"").unwrap();
        let spelled = dir.path().join("sub/../registry.sqlite");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30", "--registry"])
            .arg(&spelled)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until it has exec'd, the child's cmdline is this test's.
        let started = Instant::now();
        let mut found = registry_of(pid).unwrap();
        while found.as_os_str().is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            found = registry_of(pid).unwrap();
        }
        assert!(same_file(&found, &registry), "{}", found.display());
        assert!(!same_file(&found, &dir.path().join("other.sqlite")));
        // This test's own process is alive but names no registry.
        assert_eq!(registry_of(std::process::id()), Some(PathBuf::new()));
        assert!(!same_file(Path::new(""), &registry));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn only_a_training_is_said_to_resume_from_its_state() {
        let term = || Ok(ExitStatus::from_raw(libc::SIGTERM));
        let (to, message) = outcome(term(), true, true);
        assert_eq!(to, JobStatus::Cancelled);
        assert!(message.unwrap().contains("last saved state"));
        let (to, message) = outcome(term(), false, false);
        assert_eq!(to, JobStatus::Interrupted);
        assert_eq!(
            message.unwrap(),
            "stopped by a signal; Resume runs it again"
        );
        let (to, message) = outcome(Ok(ExitStatus::from_raw(1 << 8)), false, false);
        assert_eq!(to, JobStatus::Failed);
        assert!(message.unwrap().contains("exit status: 1"));
        assert_eq!(
            outcome(Ok(ExitStatus::from_raw(0)), true, false).0,
            JobStatus::Finished
        );
    }
}

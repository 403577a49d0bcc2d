//! Data-parallel `semiclass train`: joining the process group a launcher
//! describes (torchrun's or Slurm's environment), and `--nproc N`, a
//! launcher of our own for one machine.
//!
//! Only rank 0 shows and keeps anything: the other ranks train into a
//! scratch folder that is removed when they end, record nothing in the
//! registry, print nothing on stdout, and keep their notices to themselves
//! (their stderr carries their errors only). The engine stays unaware of which files are whose.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use semiclass_distributed::{DistEnv, ProcessGroup};
use semiclass_trainer::config::TrainConfig;
use semiclass_trainer::engine::dist::Dist;

/// How long the other ranks may take to stop once one has failed: they
/// notice a dead peer's closed connection at their next collective.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// This process's rank, read from the environment (torchrun, srun,
/// `--nproc`); `None` for a plain single-process run.
pub fn environment() -> anyhow::Result<Option<DistEnv>> {
    Ok(DistEnv::from_env()?)
}

/// "rank R of W: " in a process of a data-parallel run, else nothing:
/// under torchrun or srun every rank's errors reach the same terminal, and
/// the user must see which rank said what.
pub fn error_label() -> String {
    match DistEnv::from_env() {
        Ok(Some(env)) if env.world_size > 1 => format!("rank {} of {}: ", env.rank, env.world_size),
        _ => String::new(),
    }
}

/// Whether this process is a rank other than 0 of a data-parallel run.
pub fn is_secondary(env: Option<&DistEnv>) -> bool {
    env.is_some_and(|e| e.rank > 0)
}

/// Joins the process group, checking first that the run can be
/// distributed as configured.
pub fn join(env: &DistEnv, cfg: &TrainConfig, device: tch::Device) -> anyhow::Result<Dist> {
    check_backend(&cfg.run.dist_backend, device)?;
    let timeout = Duration::from_secs(cfg.run.dist_timeout.max(1));
    let group = ProcessGroup::new(env, timeout)?;
    Ok(Dist::new(group, cfg.run.sync_bn))
}

/// Gloo on CPU. NCCL would be the CUDA backend, but the wheel this tool
/// builds against is the CPU one and ships neither ProcessGroupNCCL nor NCCL.
fn check_backend(backend: &str, device: tch::Device) -> anyhow::Result<()> {
    match (backend, device) {
        ("auto" | "gloo", tch::Device::Cpu) => Ok(()),
        ("auto" | "gloo" | "nccl", tch::Device::Cuda(_)) => anyhow::bail!(
            "run.device is CUDA, but data-parallel training on CUDA needs PyTorch's NCCL backend, which this build of libtorch lacks; train distributed with -o run.device=cpu"
        ),
        ("nccl", _) => anyhow::bail!(
            "run.dist_backend=nccl needs CUDA devices and a libtorch with NCCL; use run.dist_backend=gloo on CPU"
        ),
        (other, _) => anyhow::bail!("run.dist_backend={other}: unknown; use auto, gloo or nccl"),
    }
}

/// A rank other than 0 shows the user nothing: nothing on stdout (its log
/// lines are rank 0's too), no notices on stderr (rank 0 says the same of
/// the run). Its stderr stays open for its own errors, which name it.
pub fn silence() {
    silence_stdout();
    semiclass_trainer::notice::silence();
}

fn silence_stdout() {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    if let Ok(null) = null {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fd 1 of a file we hold open; no Rust handle owns fd 1.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}

/// Where a rank other than 0 trains: a folder of its own, removed at exit.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn create(rank: usize) -> anyhow::Result<Scratch> {
        let temp = std::env::temp_dir();
        sweep_scratch(&temp);
        let path = scratch_path(&temp, rank, std::process::id());
        std::fs::create_dir_all(&path).with_context(|| path.display().to_string())?;
        Ok(Scratch(path))
    }

    /// Copies the folder `run` into the scratch folder; returns the copy.
    pub fn copy_of(&self, run: &Path) -> anyhow::Result<PathBuf> {
        let name = run.file_name().context("a run folder has a name")?;
        let copy = self.0.join(name);
        copy_tree(run, &copy)
            .with_context(|| format!("copying {} for this rank", run.display()))?;
        Ok(copy)
    }
}

/// Rank `rank`'s scratch folder when its process id is `pid`.
fn scratch_path(temp: &Path, rank: usize, pid: u32) -> PathBuf {
    temp.join(format!("semiclass-rank{rank}-{pid}"))
}

/// Removes the scratch folders of ranks that are gone: a killed rank
/// (SIGKILL, a crash) never drops its [`Scratch`]. A folder whose process
/// id is alive stays, even if the id now belongs to another program.
fn sweep_scratch(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(scratch_pid) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The process id in a scratch folder's name `semiclass-rank{R}-{PID}`.
fn scratch_pid(name: &str) -> Option<u32> {
    let (rank, pid) = name.strip_prefix("semiclass-rank")?.split_once('-')?;
    rank.parse::<usize>().ok()?;
    pid.parse().ok()
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `semiclass train --nproc N ...`: this same command line, N times, as
/// ranks 0..N on 127.0.0.1, with torchrun's environment.
pub fn launch_local(nproc: usize) -> anyhow::Result<ExitCode> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port on 127.0.0.1 for the ranks' rendezvous")?
        .port();
    let exe = std::env::current_exe().context("cannot find this program to start its ranks")?;
    let args = without_nproc(std::env::args_os().skip(1).collect());
    let threads = threads_per_rank(nproc);
    let mut ranks = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", threads.to_string());
        }
        if rank > 0 {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start rank {rank}", exe.display()))?;
        ranks.push(Rank::watch(rank, child));
    }
    supervise(ranks)
}

/// The command line minus `--nproc N` / `--nproc=N`.
fn without_nproc(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match arg.to_str() {
            Some("--nproc") => skip_next = true,
            Some(a) if a.starts_with("--nproc=") => {}
            _ => out.push(arg),
        }
    }
    out
}

/// The machine's cores shared out (torchrun sets 1; sharing keeps a
/// 2-rank run on 8 cores from idling 6).
fn threads_per_rank(nproc: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / nproc).max(1)
}

/// A running rank and the tail of its stderr (ranks above 0).
struct Rank {
    rank: usize,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Rank {
    fn watch(rank: usize, mut child: Child) -> Rank {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stderr.take() {
            let lines = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = lines.lock().expect("stderr lock");
                    l.push(line);
                    let excess = l.len().saturating_sub(20);
                    l.drain(..excess);
                }
            });
        }
        Rank {
            rank,
            child,
            stderr,
            status: None,
        }
    }
}

/// Waits for every rank. The first to fail is reported by rank; the
/// others get `STOP_GRACE` to stop on their own (a dead peer fails their
/// next collective), then are killed.
fn supervise(mut ranks: Vec<Rank>) -> anyhow::Result<ExitCode> {
    // Ctrl-C reaches every rank from the terminal itself: the launcher only
    // outlives it. A SIGTERM (a scheduler's) is passed on, once: a second
    // signal would end a rank while it saves its resumable state.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let mut failed: Option<(usize, ExitStatus)> = None;
    let mut deadline: Option<Instant> = None;
    let mut forwarded = false;
    while ranks.iter().any(|r| r.status.is_none()) {
        for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
            if let Some(status) = r.child.try_wait()? {
                r.status = Some(status);
                if !status.success() && failed.is_none() {
                    failed = Some((r.rank, status));
                    deadline = Some(Instant::now() + STOP_GRACE);
                }
            }
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst)
            && !std::mem::replace(&mut forwarded, true)
        {
            // Ranks save a resumable state on SIGTERM as a single run does.
            for r in ranks.iter().filter(|r| r.status.is_none()) {
                // SAFETY: signalling our own child by its pid.
                unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
                let _ = r.child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A rank that was killed left its scratch folder behind.
    let temp = std::env::temp_dir();
    for r in ranks.iter().filter(|r| r.rank > 0) {
        let _ = std::fs::remove_dir_all(scratch_path(&temp, r.rank, r.child.id()));
    }
    match failed {
        None => Ok(ExitCode::SUCCESS),
        Some((rank, status)) => Err(rank_failure(&ranks[rank], status)),
    }
}

fn rank_failure(rank: &Rank, status: ExitStatus) -> anyhow::Error {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_string(),
    };
    let tail = rank.stderr.lock().expect("stderr lock").join("\n");
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("; its last words:\n{tail}")
    };
    // Rank 0's own error, printed above, says more (it may name another rank).
    let above = if rank.rank == 0 {
        " (its error is above)"
    } else {
        ""
    };
    anyhow::anyhow!(
        "rank {} of the --nproc run {how}{above}; the other ranks were stopped{tail}",
        rank.rank
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_the_scratch_of_gone_processes_only() {
        let temp = tempfile::tempdir().unwrap();
        // A process id above the kernel's pid_max (4194304) never runs.
        let gone = scratch_path(temp.path(), 1, 4_194_305);
        let alive = scratch_path(temp.path(), 2, std::process::id());
        let other = temp.path().join("semiclass-rank1-notapid");
        for dir in [&gone, &alive, &other] {
            std::fs::create_dir_all(dir.join("run")).unwrap();
        }
        sweep_scratch(temp.path());
        assert!(!gone.exists(), "a dead rank's folder goes");
        assert!(alive.exists(), "a live process's folder stays");
        assert!(other.exists(), "another name is not ours");
    }

    #[test]
    fn nproc_is_taken_out_of_the_command_line() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            without_nproc(args(&[
                "train",
                "--nproc",
                "2",
                "-o",
                "a=1",
                "--nproc=3",
                "x"
            ])),
            args(&["train", "-o", "a=1", "x"])
        );
    }

    #[test]
    fn backends_fit_devices() {
        assert!(check_backend("auto", tch::Device::Cpu).is_ok());
        let cuda = check_backend("auto", tch::Device::Cuda(0))
            .unwrap_err()
            .to_string();
        assert!(cuda.contains("run.device=cpu"), "{cuda}");
        let bad = check_backend("mpi", tch::Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("run.dist_backend=mpi"), "{bad}");
    }
}

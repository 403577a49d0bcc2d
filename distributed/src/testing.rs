//! Tests on real ranks over loopback (the `testing` feature, for the test
//! suites of this crate and its users): the test itself is one rank, and
//! runs its own test binary again as the other, filtered to an ignored
//! test that calls [`rank_1`] (or reads [`worker_rank`] and [`worker_port`]).
//!
//! Every rank joins through [`group`], which leaves it one compute thread:
//! two ranks share the machine's cores (with the rest of the suite), and
//! OpenMP threads that outnumber the free cores spin instead of working
//! (forward passes 30 times slower on a busy 2-core machine). No test here
//! is about libtorch's threads.

use std::process::{Child, Command};
use std::time::Duration;

use crate::{DistEnv, ProcessGroup};

const PORT_VAR: &str = "SEMICLASS_TWO_RANKS_PORT";
const RANK_VAR: &str = "SEMICLASS_TWO_RANKS_RANK";

/// Rank `rank` of `world` at `127.0.0.1:port`, as a launcher would describe it.
pub fn loopback(rank: usize, world: usize, port: u16) -> DistEnv {
    DistEnv {
        rank,
        world_size: world,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
    }
}

/// Rank `rank` of `world` on loopback at `port`, computing on one thread;
/// collectives time out after `timeout`.
pub fn group(rank: usize, world: usize, port: u16, timeout: Duration) -> ProcessGroup {
    tch::set_num_threads(1);
    ProcessGroup::new(&loopback(rank, world, port), timeout).unwrap()
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// This test binary again, running only the ignored test `worker` (its
/// full path) as rank `rank` with the rendezvous at `port`; `envs` are
/// set for it too.
pub fn spawn(worker: &str, rank: usize, port: u16, envs: &[(&str, &str)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            worker,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PORT_VAR, port.to_string())
        .env(RANK_VAR, rank.to_string())
        .envs(envs.iter().copied())
        .spawn()
        .unwrap()
}

/// Runs `body` here as rank 0 of 2 while the ignored test `worker` runs as
/// rank 1 in a child process ([`rank_1`]); fails if either fails.
pub fn run(worker: &str, timeout: Duration, body: impl FnOnce(ProcessGroup)) {
    let port = free_port();
    let mut rank1 = spawn(worker, 1, port, &[]);
    body(group(0, 2, port, timeout));
    assert!(rank1.wait().unwrap().success(), "rank 1 failed");
}

/// The body of the ignored `worker` test of [`run`].
pub fn rank_1(timeout: Duration, body: impl FnOnce(ProcessGroup)) {
    body(group(1, 2, worker_port(), timeout));
}

/// The rank a [`spawn`]ed worker was started as.
pub fn worker_rank() -> usize {
    let rank = std::env::var(RANK_VAR).expect("started by testing::spawn");
    rank.parse().unwrap()
}

/// The rendezvous port a [`spawn`]ed worker was given.
pub fn worker_port() -> u16 {
    let port = std::env::var(PORT_VAR).expect("started by testing::spawn");
    port.parse().unwrap()
}

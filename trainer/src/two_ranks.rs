//! Tests on two real ranks over loopback: the test itself is rank 0, and
//! runs this test binary again as rank 1, filtered to an ignored test that
//! calls [`rank_1`].

use std::process::Command;
use std::time::Duration;

use semiclass_distributed::{DistEnv, ProcessGroup};

const PORT_VAR: &str = "SEMICLASS_TWO_RANKS_PORT";

/// Rank `rank` of `world` on loopback at `port`; collectives time out
/// after `timeout`.
pub fn group(rank: usize, world: usize, port: u16, timeout: Duration) -> ProcessGroup {
    let env = DistEnv {
        rank,
        world_size: world,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
    };
    ProcessGroup::new(&env, timeout).unwrap()
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `body` here as rank 0 of 2 while the ignored test `worker` (its
/// full path) runs as rank 1 in a child process; fails if either fails.
pub fn run(worker: &str, timeout: Duration, body: impl FnOnce(ProcessGroup)) {
    let port = free_port();
    let mut rank1 = Command::new(std::env::current_exe().unwrap())
        .args([worker, "--exact", "--ignored", "--test-threads=1"])
        .env(PORT_VAR, port.to_string())
        .spawn()
        .unwrap();
    body(group(0, 2, port, timeout));
    assert!(rank1.wait().unwrap().success(), "rank 1 failed");
}

/// The body of the ignored `worker` test of [`run`].
pub fn rank_1(timeout: Duration, body: impl FnOnce(ProcessGroup)) {
    let port = std::env::var(PORT_VAR).expect("run by two_ranks::run");
    body(group(1, 2, port.parse().unwrap(), timeout));
}

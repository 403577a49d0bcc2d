//! Two real processes on loopback: this test binary is rank 0, and runs
//! itself again (the ignored `rank_worker` test) as rank 1.

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

use std::sync::Arc;

use semiclass_distributed::testing::{free_port, group, loopback, spawn, worker_port, worker_rank};
use semiclass_distributed::{ProcessGroup, Reducer};
use tch::Tensor;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Rank 1 running `scenario` in a child process.
fn spawn_rank1(scenario: &str, port: u16) -> Child {
    spawn_rank(1, scenario, port)
}

/// Rank `rank` of 2 running `scenario` in a child process.
fn spawn_rank(rank: usize, scenario: &str, port: u16) -> Child {
    spawn(
        "rank_worker",
        rank,
        port,
        &[("SEMICLASS_TEST_SCENARIO", scenario)],
    )
}

/// What each rank holds before the collectives: rank r's values are r + 1
/// times a ramp, over tensors of several shapes.
fn rank_tensors(rank: usize) -> Vec<Tensor> {
    let r = rank as f64 + 1.0;
    vec![
        (Tensor::arange(6, (tch::Kind::Float, tch::Device::Cpu)) * r).reshape([2, 3]),
        Tensor::from_slice(&[r as f32]),
        Tensor::from_slice(&[10 * (rank as i64 + 1)]),
    ]
}

fn collectives(pg: &ProcessGroup) {
    let mut ts = rank_tensors(pg.rank());
    pg.all_reduce_mean(&mut ts[..2]).unwrap();
    // mean of 1x and 2x the ramp is 1.5x; of [1] and [2] is 1.5.
    let ramp: Vec<f32> = Vec::try_from(ts[0].reshape([-1])).unwrap();
    assert_eq!(ramp, [0.0, 1.5, 3.0, 4.5, 6.0, 7.5]);
    assert_eq!(Vec::<f32>::try_from(&ts[1]).unwrap(), [1.5]);
    // Integers add up exactly (10 + 20); their mean is refused, before any collective.
    pg.all_reduce_sum(&mut ts[2]).unwrap();
    assert_eq!(Vec::<i64>::try_from(&ts[2]).unwrap(), [30]);
    let err = pg.all_reduce_mean(&mut ts[2..]).unwrap_err().to_string();
    assert!(err.contains("a mean of Int64 values is not one"), "{err}");
    let mut ts = rank_tensors(pg.rank());
    pg.broadcast(&mut ts, 1).unwrap();
    let want = rank_tensors(1);
    for (got, want) in ts.iter().zip(&want) {
        assert!(got.equal(want), "rank {}: {got} != {want}", pg.rank());
    }
    sum_over_ranks_and_its_gradient(pg);
    pg.barrier().unwrap();
}

/// Parameters [unused, big, small]: hooked in reverse, the small one fills
/// the 1 MiB first bucket alone and starts during backward; the big one
/// shares the next bucket with the unused one, which only `finish` starts.
fn overlapped_gradient_mean(pg: Arc<ProcessGroup>) {
    let r = pg.rank() as f64 + 1.0;
    let leaf =
        |n: i64| Tensor::ones([n], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let (unused, big, small) = (leaf(3), leaf(300_000), leaf(4));
    let params = [&unused, &big, &small];
    let reducer = Reducer::new(pg.clone(), &params).unwrap();
    for step in 0..2 {
        assert_eq!(reducer.started(), 0);
        ((&big * r).sum(tch::Kind::Float) + (&small * &small * r).sum(tch::Kind::Float)).backward();
        assert_eq!(
            reducer.started(),
            1,
            "step {step}: the small bucket during backward"
        );
        reducer.finish(&params).unwrap();
        // d/dbig = r, d/dsmall = 2 r small: means over ranks 1.5 and 3.
        let mean = |t: &Tensor| t.grad().mean(tch::Kind::Float).double_value(&[]);
        assert_eq!((mean(&big), mean(&small)), (1.5, 3.0));
        assert!(
            !unused.grad().defined(),
            "an unused parameter keeps no gradient"
        );
        for p in [&big, &small] {
            let _ = p.grad().zero_();
        }
    }
}

/// Rank r sends (r + 1) * [1, 2] and weighs the sum by r + 1: every rank
/// gets [3, 6], and the gradient of its input is the sum of the ranks'
/// weights, 1 + 2 (a gradient of its own weight alone would be r + 1).
fn sum_over_ranks_and_its_gradient(pg: &ProcessGroup) {
    let r = pg.rank() as f64 + 1.0;
    let x = (Tensor::from_slice(&[1.0f32, 2.0]) * r).set_requires_grad(true);
    let sum = pg.sum_over_ranks(&x);
    assert_eq!(Vec::<f32>::try_from(&sum).unwrap(), [3.0, 6.0]);
    (&sum * r).sum(tch::Kind::Float).backward();
    pg.check_passes().unwrap();
    assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [3.0, 3.0]);
}

#[test]
#[ignore = "the other rank of the two-process tests; they run it"]
fn rank_worker() {
    let scenario = std::env::var("SEMICLASS_TEST_SCENARIO").expect("run by two_ranks tests");
    let pg = group(worker_rank(), 2, worker_port(), TIMEOUT);
    if matches!(scenario.as_str(), "die" | "hang") {
        // Fail only once the other rank is set up: it enters the barrier
        // after its rendezvous, which a rank dying earlier would cut short
        // (rank 1's last store reads then meet a reset connection: not the
        // failure these tests are about).
        pg.barrier().unwrap();
    }
    match scenario.as_str() {
        "collectives" => collectives(&pg),
        "reducer" => overlapped_gradient_mean(Arc::new(pg)),
        // Dies without a word, as a killed rank would.
        "die" => unsafe { libc::_exit(3) },
        // Stops whole (every thread), as a hung or SIGSTOPped rank would.
        "hang" => unsafe {
            libc::raise(libc::SIGSTOP);
        },
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn all_reduce_and_broadcast_across_two_processes() {
    let port = free_port();
    let mut child = spawn_rank1("collectives", port);
    let pg = group(0, 2, port, TIMEOUT);
    collectives(&pg);
    assert!(child.wait().unwrap().success(), "rank 1 failed");
}

#[test]
fn overlapped_gradient_mean_across_two_processes() {
    let port = free_port();
    let mut child = spawn_rank1("reducer", port);
    let pg = group(0, 2, port, TIMEOUT);
    overlapped_gradient_mean(Arc::new(pg));
    assert!(child.wait().unwrap().success(), "rank 1 failed");
}

#[test]
fn a_dead_rank_is_an_error_within_the_timeout() {
    let port = free_port();
    let mut child = spawn_rank1("die", port);
    let pg = group(0, 2, port, Duration::from_secs(5));
    pg.barrier().unwrap();
    let _ = child.wait();
    let start = Instant::now();
    let mut t = Tensor::from_slice(&[1.0f32]);
    let err = pg.all_reduce_sum(&mut t).unwrap_err().to_string();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    println!("{err}");
    assert!(
        err.starts_with("rank 0: all_reduce failed: rank 1 stopped responding ("),
        "{err}"
    );
}

#[test]
fn a_failure_inside_a_pass_is_kept_and_named() {
    let port = free_port();
    let mut child = spawn_rank1("die", port);
    let pg = group(0, 2, port, Duration::from_secs(5));
    pg.barrier().unwrap();
    let _ = child.wait();
    // The pass goes on with this rank's own values; the check reports.
    let x = Tensor::from_slice(&[1.0f32, 2.0]);
    let sum = pg.sum_over_ranks(&x);
    assert_eq!(Vec::<f32>::try_from(&sum).unwrap(), [1.0, 2.0]);
    let err = pg.check_passes().unwrap_err().to_string();
    println!("{err}");
    assert!(
        err.starts_with("rank 0: all_reduce failed: rank 1 stopped responding ("),
        "{err}"
    );
    pg.check_passes().expect("reported once");
}

#[test]
fn a_hung_rank_is_named_after_the_timeout() {
    let port = free_port();
    let mut child = spawn_rank1("hang", port);
    let pg = group(0, 2, port, Duration::from_secs(3));
    pg.barrier().unwrap();
    let start = Instant::now();
    let mut t = Tensor::from_slice(&[1.0f32]);
    let err = pg.all_reduce_sum(&mut t).unwrap_err().to_string();
    let took = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!("{err} (after {took:?})");
    // The 3 s timeout, then 2 s of watching the heartbeats.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        err.starts_with("rank 0: all_reduce failed: rank 1 stopped responding ("),
        "{err}"
    );
}

#[test]
fn a_dead_rank_0_is_named_as_the_store_host() {
    let port = free_port();
    let mut child = spawn_rank(0, "die", port);
    let pg = group(1, 2, port, Duration::from_secs(5));
    pg.barrier().unwrap();
    let _ = child.wait();
    let mut t = Tensor::from_slice(&[1.0f32]);
    let err = pg.all_reduce_sum(&mut t).unwrap_err().to_string();
    println!("{err}");
    assert!(
        err.starts_with(
            "rank 1: all_reduce failed: rank 0, which hosts the rendezvous store, is gone or unreachable ("
        ),
        "{err}"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = ProcessGroup::new(&loopback(0, 1, port), Duration::from_secs(5))
        .err()
        .expect("the port is taken")
        .to_string();
    println!("{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn an_unreachable_master_fails_within_the_timeout() {
    let port = free_port();
    let start = Instant::now();
    let err = ProcessGroup::new(&loopback(1, 2, port), Duration::from_secs(2))
        .err()
        .expect("nobody listens there")
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    println!("{err}");
    assert!(
        err.starts_with(&format!(
            "rank 1 of 2: rendezvous at 127.0.0.1:{port} failed"
        )),
        "{err}"
    );
}

/// Local addresses (hex, as the kernel prints them) of the sockets
/// listening on `port`, from /proc/net/tcp and tcp6.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.split_once(':') else {
                continue;
            };
            // 0A is TCP_LISTEN.
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                out.push(addr.to_string());
            }
        }
    }
    out
}

#[test]
fn a_loopback_master_store_listens_on_loopback_only() {
    let port = free_port();
    let pg = group(0, 1, port, Duration::from_secs(5));
    let addrs = listening_addresses(port);
    // 127.0.0.1 in /proc/net/tcp's byte order; anything else (0.0.0.0, or
    // :: in tcp6) would answer on every interface of the machine.
    assert!(!addrs.is_empty(), "nothing listens on port {port}");
    assert!(addrs.iter().all(|a| a == "0100007F"), "{addrs:?}");
    drop(pg);
}

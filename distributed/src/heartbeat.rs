//! Which rank stopped. Gloo names a vanished peer by address only (every
//! rank is 127.0.0.1 on one machine) and a hung one not at all ("Operation
//! timed out"), so each rank bumps a counter of its own in the rendezvous
//! store every `PERIOD`; after a failed collective, the survivors look for
//! the counters that stood still.

use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ffi;

const PERIOD: Duration = Duration::from_millis(500);
/// A rank whose counter did not move in this long has stopped.
const SILENCE: Duration = Duration::from_millis(2000);

/// The shim's handle, shared by the group and its heartbeat thread; freed
/// when both are done with it.
pub struct Raw(pub *mut ffi::ScPg);

// SAFETY: see `ProcessGroup`'s Send/Sync: c10d's objects are thread-safe.
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: from sc_pg_new, freed once, here.
        unsafe { ffi::sc_pg_free(self.0) }
    }
}

/// This rank's heartbeat; it stops when dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    /// A thread that bumps this rank's counter until stopped or until the
    /// store is gone. It is never joined: a store call may block for the
    /// group's timeout, which must not delay the process's exit.
    pub fn start(raw: Arc<Raw>, rank: usize) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let key = key(rank);
            while !flag.load(Ordering::Relaxed) && add(&raw, &key, 1).is_some() {
                std::thread::sleep(PERIOD);
            }
        });
        Heartbeat { stop }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why a collective failed, as far as the heartbeats tell: the ranks whose
/// counters stood still, or that the store (rank 0's) is gone.
pub fn diagnose(raw: &Raw, rank: usize, world: usize) -> Option<String> {
    let before = counters(raw, world);
    std::thread::sleep(SILENCE);
    let after = counters(raw, world);
    let (Some(before), Some(after)) = (before, after) else {
        return (rank != 0).then(|| {
            "rank 0, which hosts the rendezvous store, is gone or unreachable".to_string()
        });
    };
    let silent: Vec<String> = (0..world)
        .filter(|&r| r != rank && before[r] == after[r])
        .map(|r| r.to_string())
        .collect();
    match silent.len() {
        0 => None,
        1 => Some(format!("rank {} stopped responding", silent[0])),
        _ => Some(format!("ranks {} stopped responding", silent.join(", "))),
    }
}

fn counters(raw: &Raw, world: usize) -> Option<Vec<i64>> {
    (0..world).map(|r| add(raw, &key(r), 0)).collect()
}

fn key(rank: usize) -> String {
    format!("semiclass/heartbeat/{rank}")
}

fn add(raw: &Raw, key: &str, delta: i64) -> Option<i64> {
    let key = CString::new(key).expect("no NUL in keys");
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: a live handle, a C string, an out-pointer; the shim catches all.
    let value = unsafe { ffi::sc_pg_store_add(raw.0, key.as_ptr(), delta, &mut err) };
    if !err.is_null() {
        ffi::take_string(err);
        return None;
    }
    Some(value)
}

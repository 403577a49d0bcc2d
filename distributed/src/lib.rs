//! Data-parallel collectives on libtorch's own distributed engine, c10d:
//! a TCPStore rendezvous and a ProcessGroupGloo, driven through a small C++
//! shim (shim/c10d_shim.cpp) on tch tensors. Nothing here is a
//! communication layer of our own: the bytes move through the same Gloo
//! code PyTorch's `torch.distributed` runs.

mod bucket;
mod env;
mod ffi;
mod heartbeat;
mod reducer;
#[cfg(feature = "testing")]
pub mod testing;

use std::ffi::CString;
use std::os::raw::c_char;
use std::time::Duration;

use tch::Tensor;

pub use bucket::BUCKET_BYTES;
pub use env::DistEnv;
pub use reducer::{FIRST_BUCKET_BYTES, Reducer};

/// Why a distributed run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(
        "{var} is not set but {set} is; a launcher (torchrun, srun, semiclass train --nproc) sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together"
    )]
    MissingVar {
        var: &'static str,
        set: &'static str,
    },
    #[error("{var}={value}: {why}")]
    BadVar {
        var: &'static str,
        value: String,
        why: String,
    },
    #[error(
        "rank {rank} of {world}: rendezvous at {addr} failed (is the master reachable and MASTER_PORT free on it?): {message}"
    )]
    Init {
        addr: String,
        rank: usize,
        world: usize,
        message: String,
    },
    #[error("rank {rank}: {op} failed: {message}")]
    Collective {
        rank: usize,
        op: &'static str,
        message: String,
    },
    #[error("rank {rank}: {op} needs dense CPU tensors: {why}")]
    Tensor {
        rank: usize,
        op: &'static str,
        why: String,
    },
}

/// One process's membership of a Gloo process group.
pub struct ProcessGroup {
    // Declared first: the heartbeat stops before the handle is released.
    _heartbeat: heartbeat::Heartbeat,
    // c10d's TCPStore and ProcessGroupGloo are used from any thread in
    // PyTorch (ProcessGroupGloo enqueues work under its own mutex), so the
    // handle is Send and Sync; matching the order of collectives across
    // ranks is the caller's business, as in torch.distributed.
    raw: std::sync::Arc<heartbeat::Raw>,
    rank: usize,
    world_size: usize,
    /// A failure met on the Rust side of a pass ([`Self::sum_over_ranks`]).
    kept: std::sync::Mutex<Option<DistError>>,
}

impl ProcessGroup {
    /// Joins the group the environment describes (`DistEnv::from_env`).
    pub fn from_env(env: &DistEnv, timeout: Duration) -> Result<ProcessGroup, DistError> {
        Self::new(env, timeout)
    }

    /// Rendezvous at `env.master_addr:env.master_port` (rank 0 hosts the
    /// store unless a launcher does), then a full Gloo mesh. `timeout`
    /// bounds the rendezvous and every later collective.
    pub fn new(env: &DistEnv, timeout: Duration) -> Result<ProcessGroup, DistError> {
        let addr = format!("{}:{}", env.master_addr, env.master_port);
        let init = |message: String| DistError::Init {
            addr: addr.clone(),
            rank: env.rank,
            world: env.world_size,
            message,
        };
        let master = CString::new(env.master_addr.as_str())
            .map_err(|_| init("MASTER_ADDR holds a NUL byte".into()))?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; the shim catches every exception.
        let raw = unsafe {
            ffi::sc_pg_new(
                master.as_ptr(),
                env.master_port,
                env.rank as i32,
                env.world_size as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                env.hosts_store(),
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(init(ffi::take_string(err)));
        }
        let raw = std::sync::Arc::new(heartbeat::Raw(raw));
        Ok(ProcessGroup {
            _heartbeat: heartbeat::Heartbeat::start(raw.clone(), env.rank),
            raw,
            rank: env.rank,
            world_size: env.world_size,
            kept: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn raw(&self) -> *mut ffi::ScPg {
        self.raw.0
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Sums `tensor` over all ranks, in place (one collective).
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        self.check("all_reduce", tensor)?;
        let raw = tensor.as_mut_ptr();
        self.call("all_reduce", |err| unsafe {
            ffi::sc_pg_all_reduce_sum(self.raw.0, raw, err)
        })
    }

    /// `tensor` summed over all ranks, as a new tensor whose gradient is
    /// the sum over ranks of the gradients reaching it (SyncBatchNorm's
    /// statistics). Forward and backward passes deal in tensors, not
    /// errors: a failure is kept for [`Self::check_passes`], and this
    /// rank's own values come back in the meantime.
    pub fn sum_over_ranks(&self, tensor: &Tensor) -> Tensor {
        if let Err(e) = self.check("all_reduce", tensor) {
            self.keep(e);
            return tensor.shallow_clone();
        }
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live tensor; the shim returns a new at::Tensor we own, or null.
        let out = unsafe { ffi::sc_pg_sum_over_ranks(self.raw.0, tensor.as_ptr(), &mut err) };
        if out.is_null() {
            self.keep(self.failure("all_reduce", ffi::take_string(err)));
            return tensor.shallow_clone();
        }
        // SAFETY: `out` is a heap at::Tensor*, as tch's own tensors are.
        unsafe { Tensor::from_ptr(out) }
    }

    /// The first failure inside a forward or backward pass since the last
    /// check ([`Self::sum_over_ranks`], the overlapped gradient all-reduce).
    pub fn check_passes(&self) -> Result<(), DistError> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(e) = kept {
            return Err(e);
        }
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid handle and out-pointer.
        if unsafe { ffi::sc_pg_take_deferred_error(self.raw.0, &mut err) } == 0 {
            return Ok(());
        }
        Err(self.failure("all_reduce", ffi::take_string(err)))
    }

    fn keep(&self, e: DistError) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get_or_insert(e);
    }

    /// Replaces each tensor with its mean over all ranks, flattened into
    /// buckets of at most `BUCKET_BYTES` so a model's hundreds of small
    /// gradients cost a few collectives (PyTorch DDP's buckets, 25 MiB).
    pub fn all_reduce_mean(&self, tensors: &mut [Tensor]) -> Result<(), DistError> {
        let scale = 1.0 / self.world_size as f64;
        bucket::each_bucket(tensors, |flat| {
            if !matches!(
                flat.kind(),
                tch::Kind::Float | tch::Kind::Double | tch::Kind::Half | tch::Kind::BFloat16
            ) {
                return Err(DistError::Tensor {
                    rank: self.rank,
                    op: "all_reduce_mean",
                    why: format!("a mean of {:?} values is not one", flat.kind()),
                });
            }
            self.all_reduce_sum(flat)?;
            let _ = flat.g_mul_scalar_(scale);
            Ok(())
        })
    }

    /// Copies rank `root`'s values into every rank's tensors, in place.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<(), DistError> {
        bucket::each_bucket(tensors, |flat| self.broadcast_one(flat, root))
    }

    fn broadcast_one(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.check("broadcast", tensor)?;
        let raw = tensor.as_mut_ptr();
        self.call("broadcast", |err| unsafe {
            ffi::sc_pg_broadcast(self.raw.0, raw, root as i32, err)
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        self.call("barrier", |err| unsafe {
            ffi::sc_pg_barrier(self.raw.0, err)
        })
    }

    fn call(
        &self,
        op: &'static str,
        f: impl FnOnce(*mut *mut c_char) -> i32,
    ) -> Result<(), DistError> {
        let mut err: *mut c_char = std::ptr::null_mut();
        if f(&mut err) == 0 {
            return Ok(());
        }
        Err(self.failure(op, ffi::take_string(err)))
    }

    /// A failed collective's error, naming the rank that stood still when
    /// the heartbeats tell (Gloo names only an address, or nothing).
    pub(crate) fn failure(&self, op: &'static str, gloo: String) -> DistError {
        let message = match heartbeat::diagnose(&self.raw, self.rank, self.world_size) {
            Some(who) => format!("{who} ({gloo})"),
            None => gloo,
        };
        DistError::Collective {
            rank: self.rank,
            op,
            message,
        }
    }

    /// Gloo reduces dense CPU memory in place: anything else is our bug,
    /// reported rather than handed to C++.
    pub(crate) fn check(&self, op: &'static str, t: &Tensor) -> Result<(), DistError> {
        let why = if t.device() != tch::Device::Cpu {
            format!("got a tensor on {:?} (Gloo is the CPU backend)", t.device())
        } else if !t.is_contiguous() {
            "got a non-contiguous tensor".into()
        } else {
            return Ok(());
        };
        Err(DistError::Tensor {
            rank: self.rank,
            op,
            why,
        })
    }
}

//! Gradient averaging overlapped with backward (shim/reducer.cpp, after
//! PyTorch DDP's reducer): hooks on the parameters start each bucket's
//! all-reduce as soon as backward has produced its gradients, so the
//! communication of the last layers runs while the first ones are still
//! being differentiated.

use std::os::raw::c_char;
use std::sync::Arc;

use tch::Tensor;

use crate::{DistError, ProcessGroup, ffi};

/// PyTorch DDP's first bucket (1 MiB): communication starts after the last
/// few layers' gradients rather than after a quarter of the model.
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

/// The parameters of one model, hooked for overlapped averaging. Every
/// rank must build it over the same parameters in the same order.
pub struct Reducer {
    raw: *mut ffi::ScReducer,
    group: Arc<ProcessGroup>,
}

// SAFETY: the C++ reducer guards its state with its own mutex; its hooks
// run on whichever thread runs backward, as in PyTorch.
unsafe impl Send for Reducer {}
unsafe impl Sync for Reducer {}

impl Reducer {
    /// Hooks `params` (leaf tensors that require grad, on the CPU).
    pub fn new(group: Arc<ProcessGroup>, params: &[&Tensor]) -> Result<Reducer, DistError> {
        // Any layout will do (channels-last weights are not contiguous):
        // the shim copies gradients into its own contiguous buckets.
        if let Some(p) = params.iter().find(|p| p.device() != tch::Device::Cpu) {
            return Err(DistError::Tensor {
                rank: group.rank(),
                op: "reducer",
                why: format!(
                    "got a parameter on {:?} (Gloo is the CPU backend)",
                    p.device()
                ),
            });
        }
        let ptrs: Vec<ffi::ConstTensorPtr> = params.iter().map(|p| p.as_ptr()).collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: live tensors for the call's duration; the shim copies the handles.
        let raw = unsafe {
            ffi::sc_reducer_new(
                group.raw(),
                ptrs.as_ptr(),
                ptrs.len(),
                FIRST_BUCKET_BYTES as i64,
                crate::BUCKET_BYTES as i64,
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(group.failure("reducer", ffi::take_string(err)));
        }
        Ok(Reducer { raw, group })
    }

    /// Buckets whose all-reduce has started this step: during backward,
    /// those whose gradients are all in.
    pub fn started(&self) -> usize {
        // SAFETY: a live reducer.
        unsafe { ffi::sc_reducer_started(self.raw) }
    }

    /// After backward (or in place of a skipped one): starts the buckets
    /// backward did not reach, waits for all, and leaves each parameter's
    /// gradient averaged over ranks (an undefined gradient counts as zeros
    /// and stays undefined, as without hooks). `params` are the hooked ones.
    pub fn finish(&self, params: &[&Tensor]) -> Result<(), DistError> {
        let ptrs: Vec<ffi::ConstTensorPtr> = params.iter().map(|p| p.as_ptr()).collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `new`.
        let rc = unsafe { ffi::sc_reducer_finish(self.raw, ptrs.as_ptr(), ptrs.len(), &mut err) };
        if rc != 0 {
            return Err(self.group.failure("all_reduce", ffi::take_string(err)));
        }
        self.group.check_passes()
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: created by sc_reducer_new, freed once; unhooks the parameters.
        unsafe { ffi::sc_reducer_free(self.raw) }
    }
}

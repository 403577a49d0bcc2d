//! The C ABI of shim/c10d_shim.cpp.

use std::os::raw::{c_char, c_int};

/// An opaque `sc_pg` (a TCPStore and a ProcessGroupGloo).
#[repr(C)]
pub struct ScPg {
    _private: [u8; 0],
}

/// An opaque `sc_reducer` (shim/reducer.cpp).
#[repr(C)]
pub struct ScReducer {
    _private: [u8; 0],
}

/// What `tch::Tensor::as_ptr` returns: a `torch::Tensor*` (torch-sys).
pub type TensorPtr = *mut torch_sys::C_tensor;
/// A tensor the shim reads but does not write (`Tensor::as_ptr`).
pub type ConstTensorPtr = *const torch_sys::C_tensor;

unsafe extern "C" {
    pub fn sc_free_string(s: *mut c_char);
    pub fn sc_pg_new(
        master: *const c_char,
        port: u16,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        store_server: bool,
        err: *mut *mut c_char,
    ) -> *mut ScPg;
    pub fn sc_pg_free(pg: *mut ScPg);
    pub fn sc_pg_all_reduce_sum(pg: *mut ScPg, t: TensorPtr, err: *mut *mut c_char) -> c_int;
    pub fn sc_pg_broadcast(
        pg: *mut ScPg,
        t: TensorPtr,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn sc_pg_sum_over_ranks(
        pg: *mut ScPg,
        t: ConstTensorPtr,
        err: *mut *mut c_char,
    ) -> TensorPtr;
    pub fn sc_pg_take_deferred_error(pg: *mut ScPg, err: *mut *mut c_char) -> c_int;
    pub fn sc_reducer_new(
        pg: *mut ScPg,
        params: *const ConstTensorPtr,
        n: usize,
        first_cap: i64,
        cap: i64,
        err: *mut *mut c_char,
    ) -> *mut ScReducer;
    pub fn sc_reducer_free(r: *mut ScReducer);
    pub fn sc_reducer_started(r: *mut ScReducer) -> usize;
    pub fn sc_reducer_finish(
        r: *mut ScReducer,
        params: *const ConstTensorPtr,
        n: usize,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn sc_pg_barrier(pg: *mut ScPg, err: *mut *mut c_char) -> c_int;
    pub fn sc_pg_store_add(
        pg: *mut ScPg,
        key: *const c_char,
        delta: i64,
        err: *mut *mut c_char,
    ) -> i64;
}

/// Takes ownership of a message the shim allocated.
pub fn take_string(s: *mut c_char) -> String {
    if s.is_null() {
        return "unknown error (no message)".into();
    }
    // SAFETY: the shim returns NUL-terminated strings from malloc, freed once here.
    let out = unsafe { std::ffi::CStr::from_ptr(s) }
        .to_string_lossy()
        .into_owned();
    unsafe { sc_free_string(s) };
    out
}

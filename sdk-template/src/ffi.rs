//! The C ABI of `libsemiclass_sdk.so`, declared in `include/semiclass_sdk.h`.
//!
//! Every function checks its pointers, never lets a panic cross into C
//! (`catch_unwind`), and leaves the reason of a failure in a thread-local
//! text that `semiclass_last_error` returns.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr;

use semiclass_licensing::ActivationDir;

use crate::error::{SdkError, Status};
use crate::model::{LoadOptions, Model};
use crate::package::{Package, environment};
use semiclass_onnxruntime::device::{Device, FALLBACK_ENV};

/// An open model, as C holds it.
pub struct SemiclassModel {
    model: Model,
    /// The class names as C strings, alive as long as the handle.
    names: Vec<CString>,
}

/// One class of a top-k answer; `name` lives as long as the model handle.
#[repr(C)]
pub struct SemiclassPrediction {
    pub class_id: u32,
    pub score: f32,
    pub name: *const c_char,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(text));
}

/// Runs `body`, turning an error or a panic into a status and a last error.
fn guarded(body: impl FnOnce() -> Result<(), SdkError>) -> i32 {
    LAST_ERROR.with(|last| *last.borrow_mut() = None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Status::Ok as i32,
        Ok(Err(err)) => {
            set_last_error(&err.to_string());
            err.status() as i32
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(&format!(
                "internal error in the semiclass SDK ({what}): please report it"
            ));
            Status::Internal as i32
        }
    }
}

fn invalid(message: &str) -> SdkError {
    SdkError::InvalidArgument(message.to_string())
}

/// A non-null C string as UTF-8.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string.
unsafe fn text<'a>(text: *const c_char, what: &str) -> Result<&'a str, SdkError> {
    if text.is_null() {
        return Err(invalid(&format!("{what} is a null pointer")));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// The SDK's version, e.g. `0.1.0`.
#[unsafe(no_mangle)]
pub extern "C" fn semiclass_version() -> *const c_char {
    static VERSION: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| CString::new(crate::VERSION).unwrap_or_default())
        .as_ptr()
}

/// Why the last `semiclass_open` or `semiclass_predict` on this thread
/// failed; null after a success. Valid until the next such call.
#[unsafe(no_mangle)]
pub extern "C" fn semiclass_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ref().map_or(ptr::null(), |e| e.as_ptr()))
}

/// Opens the package in `package_dir`: checks its files and license, then
/// loads its model into `*out`. `activation_dir` may be null (the default
/// folder, as `infer activate` uses). A cuda-x86_64 package whose GPU
/// cannot be used fails, unless SEMICLASS_ALLOW_CPU_FALLBACK=1 is set: then
/// it runs on the CPU, with a warning on stderr.
///
/// # Safety
/// The strings are null or NUL-terminated; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semiclass_open(
    package_dir: *const c_char,
    activation_dir: *const c_char,
    out: *mut *mut SemiclassModel,
) -> i32 {
    guarded(|| {
        if out.is_null() {
            return Err(invalid("out is a null pointer"));
        }
        // SAFETY: the caller's contract.
        unsafe { *out = ptr::null_mut() };
        let package = Package::read(Path::new(unsafe { text(package_dir, "package_dir")? }))?;
        let activation = if activation_dir.is_null() {
            package.default_activation()?
        } else {
            ActivationDir::new(unsafe { text(activation_dir, "activation_dir")? })
        };
        // A C library has no flags: the fallback is asked for in the
        // environment, under the same name the CLIs' flag has.
        let options = LoadOptions {
            allow_cpu_fallback: std::env::var_os(FALLBACK_ENV).is_some_and(|v| v == "1"),
        };
        let model = Model::open_with(&package, &activation, &environment()?, options)?;
        if let Device::CpuFallback(why) = model.device() {
            eprintln!("semiclass: warning: running on the CPU as {FALLBACK_ENV}=1 allows: {why}");
        }
        let names = model
            .class_names()
            .iter()
            .map(|n| CString::new(n.replace('\0', " ")).unwrap_or_default())
            .collect();
        let handle = Box::new(SemiclassModel { model, names });
        // SAFETY: checked non-null above.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}

/// Classifies one encoded image (`image_len` bytes of JPEG, PNG, BMP,
/// WebP, ...): writes the `top_k` best classes, best first, to `out` (room
/// for `top_k` entries) and their count to `*out_len`.
///
/// # Safety
/// `model` comes from `semiclass_open`; `image` holds `image_len` bytes;
/// `out` has room for `top_k` entries; `out_len` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semiclass_predict(
    model: *const SemiclassModel,
    image: *const u8,
    image_len: usize,
    top_k: usize,
    out: *mut SemiclassPrediction,
    out_len: *mut usize,
) -> i32 {
    guarded(|| {
        if model.is_null() || image.is_null() || out.is_null() || out_len.is_null() {
            return Err(invalid("model, image, out and out_len must not be null"));
        }
        // SAFETY: the caller's contract.
        let (handle, bytes) = unsafe { (&*model, std::slice::from_raw_parts(image, image_len)) };
        let predictions = handle.model.predict(bytes, top_k)?;
        for (i, p) in predictions.iter().enumerate() {
            let entry = SemiclassPrediction {
                class_id: p.class_id as u32,
                score: p.score,
                name: handle.names[p.class_id].as_ptr(),
            };
            // SAFETY: `predictions.len() <= top_k`, the room `out` has.
            unsafe { out.add(i).write(entry) };
        }
        unsafe { *out_len = predictions.len() };
        Ok(())
    })
}

/// The number of classes (0 for a null handle).
///
/// # Safety
/// `model` is null or comes from `semiclass_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semiclass_num_classes(model: *const SemiclassModel) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.names.len())
}

/// The name of class `class_id`; null for a null handle or an unknown id.
///
/// # Safety
/// `model` is null or comes from `semiclass_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semiclass_class_name(
    model: *const SemiclassModel,
    class_id: usize,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }
        .and_then(|m| m.names.get(class_id))
        .map_or(ptr::null(), |n| n.as_ptr())
}

/// Frees a model; null is allowed.
///
/// # Safety
/// `model` is null or comes from `semiclass_open` and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semiclass_close(model: *mut SemiclassModel) {
    if !model.is_null() {
        // A panic while dropping the session must not reach C either.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the caller's contract: from `Box::into_raw`, once.
            drop(unsafe { Box::from_raw(model) })
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> Option<String> {
        let text = semiclass_last_error();
        // SAFETY: a NUL-terminated string owned by this thread's slot.
        (!text.is_null()).then(|| {
            unsafe { CStr::from_ptr(text) }
                .to_str()
                .unwrap()
                .to_string()
        })
    }

    #[test]
    fn null_pointers_are_refused_with_a_message() {
        let mut model = ptr::null_mut();
        let status = unsafe { semiclass_open(ptr::null(), ptr::null(), &mut model) };
        assert_eq!(status, Status::InvalidArgument as i32);
        assert!(model.is_null());
        assert!(
            last_error()
                .unwrap()
                .contains("package_dir is a null pointer")
        );
        let status = unsafe { semiclass_open(c"pkg".as_ptr(), ptr::null(), ptr::null_mut()) };
        assert_eq!(status, Status::InvalidArgument as i32);
        let mut count = 0;
        let status = unsafe {
            semiclass_predict(
                ptr::null(),
                c"x".as_ptr().cast(),
                1,
                1,
                ptr::null_mut(),
                &mut count,
            )
        };
        assert_eq!(status, Status::InvalidArgument as i32);
        assert_eq!(unsafe { semiclass_num_classes(ptr::null()) }, 0);
        assert!(unsafe { semiclass_class_name(ptr::null(), 0) }.is_null());
        unsafe { semiclass_close(ptr::null_mut()) };
    }

    #[test]
    fn a_missing_package_is_named() {
        let mut model = ptr::null_mut();
        let status =
            unsafe { semiclass_open(c"/nonexistent/pkg".as_ptr(), ptr::null(), &mut model) };
        assert_eq!(status, Status::Package as i32);
        let message = last_error().unwrap();
        assert!(
            message.starts_with("/nonexistent/pkg: ") && message.contains("No such file"),
            "{message}"
        );
        // The message belongs to this thread only.
        std::thread::spawn(|| assert_eq!(last_error(), None))
            .join()
            .unwrap();
        let version = unsafe { CStr::from_ptr(semiclass_version()) };
        assert_eq!(version.to_str().unwrap(), crate::VERSION);
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let status = guarded(|| panic!("boom"));
        assert_eq!(status, Status::Internal as i32);
        let message = last_error().unwrap();
        assert!(
            message.contains("boom") && message.contains("please report it"),
            "{message}"
        );
        assert_eq!(guarded(|| Ok(())), Status::Ok as i32);
        assert_eq!(last_error(), None);
    }
}

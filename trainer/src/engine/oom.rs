//! Running out of memory (CUDA, or the CPU allocator) inside libtorch
//! surfaces as a panic from tch; a training step turns it into an error
//! that says which batch size to try.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::TrainError;

/// What the caller knows to build the advice.
pub struct OomContext<'a> {
    /// `large` or `small`: the config section of the batch size.
    pub section: &'a str,
    pub batch_size: usize,
    pub stage: &'a str,
    pub step: u64,
}

/// Runs `f`; an out-of-memory panic becomes [`TrainError::OutOfMemory`],
/// any other panic goes on unwinding.
pub fn catch_oom<T>(
    context: OomContext,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) if is_out_of_memory(&panic_text(payload.as_ref())) => {
            Err(TrainError::OutOfMemory {
                section: context.section.to_string(),
                batch_size: context.batch_size,
                try_batch_size: (context.batch_size / 2).max(1),
                stage: context.stage.to_string(),
                step: context.step,
            })
        }
        Err(payload) => resume_unwind(payload),
    }
}

/// The message of a panic payload (`&str` or `String`).
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// libtorch's wording for CUDA ("CUDA out of memory") and for the CPU
/// allocator ("DefaultCPUAllocator: can't allocate memory").
pub fn is_out_of_memory(text: &str) -> bool {
    text.contains("out of memory") || text.contains("can't allocate memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> OomContext<'static> {
        OomContext {
            section: "large",
            batch_size: 64,
            stage: "ssl",
            step: 12,
        }
    }

    #[test]
    fn an_out_of_memory_panic_becomes_advice() {
        let err = catch_oom(context(), || -> Result<(), TrainError> {
            std::panic::panic_any(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"
                    .to_string(),
            )
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("-o large.batch_size=32"), "{text}");
        assert!(text.contains("step 12 of stage ssl"), "{text}");
    }

    #[test]
    fn other_panics_keep_unwinding() {
        let outcome = catch_unwind(|| {
            catch_oom(context(), || -> Result<(), TrainError> {
                panic!("shape mismatch")
            })
        });
        assert!(outcome.is_err());
    }

    #[test]
    fn the_cpu_allocator_wording_counts() {
        assert!(is_out_of_memory(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"
        ));
        assert!(!is_out_of_memory("size mismatch"));
    }
}

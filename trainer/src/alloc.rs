//! Allocator tuning for training.
//!
//! A training step allocates and frees the same multi-megabyte activation
//! buffers thousands of times. glibc serves blocks above its (adaptive)
//! mmap threshold with fresh `mmap`s, so every step page-faults its
//! activations in again, and whether the threshold has adapted yet makes
//! the same PyTorch step vary by a third from run to run on this machine.
//! Fixing the threshold at its maximum and keeping freed memory in the heap
//! makes steps fast and steady (measured in bench/train-step.sh). A
//! training process so keeps its peak heap until it exits, as PyTorch's
//! GPU caching allocator keeps its memory.

/// Applies the settings; a no-op where the C library is not glibc.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any thread of ours allocates concurrently (at startup).
    unsafe {
        // No mmap-served blocks at all: activations at 224 px exceed even
        // glibc's largest threshold (32 MiB), and each would fault in anew.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // Never return freed heap memory: the next step needs it again. A
        // 1 GiB threshold was not enough: lcnet_100's 224 px step at batch 64
        // frees more than that at its end, so glibc trimmed the heap 8 times
        // in 18 steps and faulted 10 GiB back in (3 GiB without trimming),
        // a third of the step on 2 cores (bench/train-step.sh).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

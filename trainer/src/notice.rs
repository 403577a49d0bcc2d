//! Lines for the person who runs the training, beside the log on stdout:
//! what was chosen (mirrors, a baseline), found (a teacher, a cache of its
//! predictions) or feared (a warning). [`notice!`](crate::notice!) writes
//! them to stderr.
//!
//! A data-parallel rank other than 0 keeps them to itself ([`silence`]):
//! rank 0 says the same of the same run, and another rank's lines name its
//! scratch folder, which the user never sees. Errors never pass through
//! here: whichever rank fails says so on its stderr, naming its rank.

use std::sync::atomic::{AtomicBool, Ordering};

static SILENCED: AtomicBool = AtomicBool::new(false);

/// From now on this process's notices are dropped (a rank other than 0).
pub fn silence() {
    SILENCED.store(true, Ordering::Relaxed);
}

/// Whether notices are printed (not [`silence`]d).
pub fn shown() -> bool {
    !SILENCED.load(Ordering::Relaxed)
}

/// `eprintln!` for a line of [`crate::notice`]: printed unless silenced.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        if $crate::notice::shown() {
            eprintln!($($arg)*);
        }
    };
}

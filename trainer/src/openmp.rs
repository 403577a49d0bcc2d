//! How long libtorch's OpenMP threads spin before they sleep.
//!
//! The PyTorch wheel's libgomp lets a thread that waits at a barrier spin
//! for up to 300,000 iterations (about 3 ms) before it sleeps. On a quiet
//! machine that wins a little; on one where another process wants a core,
//! the waiting thread spins away the time in which the thread it waits for
//! could have run. Measured with one busy process beside a training step
//! on 2 cores (bench/openmp-spin.sh), against libgomp's default: 3,000
//! iterations ran 1.13-1.35x faster and cost 0-2% on the quiet machine;
//! 1,000 (libgomp's own count when it has more threads than CPUs)
//! 1.29-1.58x, but 7-10% on the quiet machine; sleeping at once
//! (`OMP_WAIT_POLICY=passive`) 1.44-1.59x, but 17-29% on the quiet machine.
//! The default is 3,000: a dedicated machine loses next to nothing, a
//! shared one gains much of what there is.
//!
//! libgomp reads its settings once, when it is loaded, which is before
//! `main`; so the commands that compute with libtorch re-execute themselves
//! with the setting (the same process id, arguments and environment). An
//! `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` the user set is kept as it is.

use std::ffi::OsString;

/// libgomp's spin count before a waiting thread sleeps.
pub const SPIN_COUNT_ENV: &str = "GOMP_SPINCOUNT";
/// The OpenMP standard's wait policy (`active` or `passive`).
pub const WAIT_POLICY_ENV: &str = "OMP_WAIT_POLICY";
/// The spin count the training commands run with unless told otherwise.
pub const BOUNDED_SPIN_COUNT: &str = "3000";

/// Whether the environment `get` reads leaves the spin to libgomp's
/// default: neither variable set to anything.
pub fn spin_unset(get: impl Fn(&str) -> Option<OsString>) -> bool {
    let set = |name: &str| get(name).is_some_and(|v| !v.is_empty());
    !set(SPIN_COUNT_ENV) && !set(WAIT_POLICY_ENV)
}

/// Re-executes this program with `GOMP_SPINCOUNT=3000` when the user set
/// neither variable. Returns when nothing needed doing, or when the
/// re-execution failed (then libgomp's default spin stays: slower on a
/// busy machine, never wrong).
pub fn bound_spinning() {
    if !spin_unset(|name| std::env::var_os(name)) {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let Some(arg0) = args.next() else {
        return;
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // `exec` only returns on failure.
        let _failed = std::process::Command::new(program)
            .arg0(arg0)
            .args(args)
            .env(SPIN_COUNT_ENV, BOUNDED_SPIN_COUNT)
            .exec();
    }
}

/// The setting in effect, for the run's log: which variable, its value and
/// who chose it.
pub fn describe() -> String {
    describe_with(|name| std::env::var_os(name))
}

fn describe_with(get: impl Fn(&str) -> Option<OsString>) -> String {
    let get = |name: &str| {
        get(name)
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
    };
    match (get(WAIT_POLICY_ENV), get(SPIN_COUNT_ENV)) {
        (Some(policy), _) => format!("{WAIT_POLICY_ENV}={policy} (from the environment)"),
        (None, Some(count)) if count == BOUNDED_SPIN_COUNT => {
            format!("{SPIN_COUNT_ENV}={count}")
        }
        (None, Some(count)) => format!("{SPIN_COUNT_ENV}={count} (from the environment)"),
        (None, None) => format!("libgomp's default spin ({SPIN_COUNT_ENV} could not be set)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn only_an_environment_without_either_variable_gets_the_bounded_spin() {
        assert!(spin_unset(env(&[])));
        assert!(spin_unset(env(&[("OMP_NUM_THREADS", "2")])));
        // Empty values are unset to libgomp too.
        assert!(spin_unset(env(&[
            (SPIN_COUNT_ENV, ""),
            (WAIT_POLICY_ENV, "")
        ])));
        assert!(!spin_unset(env(&[(SPIN_COUNT_ENV, "300000")])));
        assert!(!spin_unset(env(&[(SPIN_COUNT_ENV, BOUNDED_SPIN_COUNT)])));
        assert!(!spin_unset(env(&[(WAIT_POLICY_ENV, "passive")])));
    }

    #[test]
    fn the_log_says_who_chose_the_setting() {
        let bounded = describe_with(env(&[(SPIN_COUNT_ENV, BOUNDED_SPIN_COUNT)]));
        assert_eq!(bounded, "GOMP_SPINCOUNT=3000");
        let theirs = describe_with(env(&[(SPIN_COUNT_ENV, "300000")]));
        assert_eq!(theirs, "GOMP_SPINCOUNT=300000 (from the environment)");
        let policy = describe_with(env(&[(WAIT_POLICY_ENV, "passive"), (SPIN_COUNT_ENV, "5")]));
        assert_eq!(policy, "OMP_WAIT_POLICY=passive (from the environment)");
        assert!(describe_with(env(&[])).contains("could not be set"));
    }
}

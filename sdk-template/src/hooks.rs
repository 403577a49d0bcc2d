//! Test hooks: with the cargo feature `test-hooks`, the variables
//! `SEMICLASS_TEST_KEYRING` (a keyring JSON file), `SEMICLASS_TEST_MACHINE`
//! (a JSON list of hashed fingerprint components) and `SEMICLASS_TEST_NOW`
//! (unix seconds) replace the built-in keys, the machine and the clock, so
//! the end-to-end tests can play vendor, other machines and other dates.
//!
//! Why this cannot weaken a shipped SDK: the feature is off by default and
//! only this crate's own dev-dependency on itself turns it on, which cargo
//! builds for tests and never for `cargo build`; without the feature none
//! of this code exists in the binary. A build with the hooks carries
//! the marker `semiclass-sdk-test-hooks-enabled` in its version string, and the packaging step
//! (`semiclass-sdk-layout`) refuses any SDK file that contains it.

/// The version string; names the hooks when they are compiled in.
#[cfg(not(feature = "test-hooks"))]
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "test-hooks")]
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (semiclass-sdk-test-hooks-enabled: not for shipping)"
);

#[cfg(feature = "test-hooks")]
pub(crate) use enabled::apply;

#[cfg(feature = "test-hooks")]
mod enabled {
    use std::env;

    use semiclass_licensing::fingerprint::Component;
    use semiclass_licensing::{Environment, Fingerprint, Keyring};

    use crate::error::SdkError;

    fn hook_error(name: &str, reason: impl std::fmt::Display) -> SdkError {
        SdkError::InvalidArgument(format!("{name}: {reason}"))
    }

    /// Replaces what the `SEMICLASS_TEST_*` variables name.
    pub(crate) fn apply(environment: &mut Environment) -> Result<(), SdkError> {
        if let Some(path) = env::var_os("SEMICLASS_TEST_KEYRING") {
            let name = "SEMICLASS_TEST_KEYRING";
            let text = std::fs::read_to_string(&path).map_err(|e| hook_error(name, e))?;
            environment.keyring = Keyring::from_json(&text).map_err(|e| hook_error(name, e))?;
        }
        if let Ok(json) = env::var("SEMICLASS_TEST_MACHINE") {
            let name = "SEMICLASS_TEST_MACHINE";
            let components: Vec<Component> =
                serde_json::from_str(&json).map_err(|e| hook_error(name, e))?;
            let machine =
                Fingerprint::from_components(components).map_err(|e| hook_error(name, e))?;
            environment.machine = Box::new(machine);
        }
        if let Ok(now) = env::var("SEMICLASS_TEST_NOW") {
            environment.now = now
                .parse()
                .map_err(|e| hook_error("SEMICLASS_TEST_NOW", e))?;
        }
        Ok(())
    }
}

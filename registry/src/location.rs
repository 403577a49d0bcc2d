//! Where the registry file is: `--registry PATH`, else `SEMICLASS_REGISTRY`,
//! else the user's data folder (XDG base directories).

use std::path::PathBuf;

/// The environment variable that moves the registry.
pub const ENV: &str = "SEMICLASS_REGISTRY";

/// The registry's file name inside `$XDG_DATA_HOME/semiclass/`.
pub const FILE_NAME: &str = "registry.sqlite";

/// The registry path for a `--registry` flag value (or its absence).
pub fn registry_path(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    choose(flag, var(ENV), var("XDG_DATA_HOME"), var("HOME"))
}

/// The precedence, apart from the process environment: flag, then the
/// variable, then `$XDG_DATA_HOME` (only when absolute, as the XDG
/// specification says), then `$HOME/.local/share`.
fn choose(
    flag: Option<PathBuf>,
    env: Option<std::ffi::OsString>,
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    if let Some(path) = flag.or(env.map(PathBuf::from)) {
        return Ok(path);
    }
    let data = xdg_data_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| {
            format!("no place for the registry: neither XDG_DATA_HOME nor HOME is set; use --registry PATH or {ENV}")
        })?;
    Ok(data.join("semiclass").join(FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<std::ffi::OsString> {
        Some(s.into())
    }

    #[test]
    fn the_flag_wins_then_the_variable_then_the_data_folder() {
        let flag = Some(PathBuf::from("/f.sqlite"));
        assert_eq!(
            choose(flag, os("/e.sqlite"), os("/x"), os("/h")).unwrap(),
            PathBuf::from("/f.sqlite")
        );
        assert_eq!(
            choose(None, os("/e.sqlite"), os("/x"), os("/h")).unwrap(),
            PathBuf::from("/e.sqlite")
        );
        assert_eq!(
            choose(None, None, os("/x"), os("/h")).unwrap(),
            PathBuf::from("/x/semiclass/registry.sqlite")
        );
        assert_eq!(
            choose(None, None, None, os("/h")).unwrap(),
            PathBuf::from("/h/.local/share/semiclass/registry.sqlite")
        );
    }

    #[test]
    fn a_relative_xdg_data_home_is_ignored_as_the_specification_says() {
        assert_eq!(
            choose(None, None, os("rel"), os("/h")).unwrap(),
            PathBuf::from("/h/.local/share/semiclass/registry.sqlite")
        );
        let err = choose(None, None, os("rel"), None).unwrap_err();
        assert!(err.contains("--registry PATH"), "{err}");
    }
}

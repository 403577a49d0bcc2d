//! What a stopped training leaves to resume from.

use std::path::{Path, PathBuf};

/// The newest `*-last.state.safetensors` of a run: in `RUN/checkpoints/`
/// (mode large or small) or `RUN/large|small/checkpoints/` (mode joint),
/// as `semiclass train --resume` takes it.
pub fn newest_state(run_dir: &Path) -> Option<PathBuf> {
    let folders =
        ["checkpoints", "large/checkpoints", "small/checkpoints"].map(|sub| run_dir.join(sub));
    semiclass_registry::resume_state::newest_in(folders.iter().map(PathBuf::as_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_state_of_a_joint_run_is_found() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_state(dir.path()), None);
        let large = dir.path().join("large/checkpoints");
        let small = dir.path().join("small/checkpoints");
        std::fs::create_dir_all(&large).unwrap();
        std::fs::create_dir_all(&small).unwrap();
        std::fs::write(large.join("ssl-last.state.safetensors"), b"a").unwrap();
        std::fs::write(large.join("best.safetensors"), b"b").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(large.join("ssl-last.state.safetensors"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(small.join("distill-last.state.safetensors"), b"c").unwrap();
        assert_eq!(
            newest_state(dir.path()),
            Some(small.join("distill-last.state.safetensors"))
        );
    }
}

//! An export request, checked, as a `semiclass export` job.

use semiclass_manifest::package::Target;

use super::packages::packages_dir;
use crate::error::StudioError;
use crate::evals::{checked_checkpoint, checkpoint_config};
use crate::jobs::runner::{CommandJob, unique_stamp};
use crate::state::Studio;

/// The export form.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ExportRequest {
    /// `@nickname` or the path of a recorded checkpoint.
    #[serde(default)]
    pub checkpoint: String,
    #[serde(default)]
    pub target: String,
    /// `on` for the offline SDK (activated with a serial); without it the
    /// package is for `semiclass-serve` (and this studio's serving).
    #[serde(default)]
    pub sdk: Option<String>,
}

impl ExportRequest {
    /// The job, once the checkpoint and the target are known ones.
    pub fn job(&self, studio: &Studio) -> Result<CommandJob, StudioError> {
        let target = Target::parse(self.target.trim()).ok_or_else(|| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.as_str()).collect();
            StudioError::Invalid(format!(
                "unknown target '{}'; one of {}",
                self.target,
                known.join(", ")
            ))
        })?;
        let checkpoint = checked_checkpoint(&studio.registry()?, &self.checkpoint)?;
        let shown = checkpoint.nickname.as_ref().map_or_else(
            || checkpoint.path.display().to_string(),
            |n| format!("@{n}"),
        );
        let name = format!("export-{}-{target}", unique_stamp());
        let out_dir = packages_dir(studio).join(&name);
        let mut args = vec!["export".to_string(), shown.clone()];
        args.extend(["--target".into(), target.as_str().into()]);
        args.extend(["--out".into(), out_dir.display().to_string()]);
        let sdk = self.sdk.is_some();
        if !sdk {
            args.push("--without-sdk".into());
        }
        Ok(CommandJob {
            kind: "export",
            title: format!(
                "export {shown} for {target}{}",
                if sdk { " with the offline SDK" } else { "" }
            ),
            config: checkpoint_config(&checkpoint),
            args,
            out_dir,
            name,
        })
    }
}

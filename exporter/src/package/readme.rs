//! Templates rendered with one model's facts: the package README, and the
//! SDK's `*.tmpl` files. `{{name}}` is replaced by the value of `name`; an
//! unknown name is an error, so a template typo never ships.

use semiclass_manifest::package::{PackageManifest, Target};

/// The README of a package built without an SDK.
pub const DEFAULT_README: &str = include_str!("../../templates/README.md");

const CUDA_NOTE: &str = " This CUDA build loads the machine's NVIDIA driver, CUDA and \
cuDNN libraries (the versions onnxruntime.ai lists for this release); where they \
are missing, use the cpu-x86_64 package.";

/// `template` with every `{{name}}` replaced from `vars`.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "unclosed '{{{{' at byte {}",
                template.len() - rest.len() + start
            )
        })?;
        let name = after[..end].trim();
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .ok_or_else(|| format!("unknown template variable '{name}'"))?;
        out.push_str(&value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The facts a template may use, from the package's manifest.
pub fn variables(m: &PackageManifest, package_file: &str) -> Vec<(&'static str, String)> {
    let model = &m.model;
    let p = &model.preprocess;
    let floats = |v: [f32; 3]| format!("[{}, {}, {}]", v[0], v[1], v[2]);
    let classes = model
        .class_names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("| {i} | {} |", name.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join("\n");
    let (pip_package, runtime_note) = match m.target {
        Target::CpuX86_64 => ("onnxruntime", ""),
        Target::CudaX86_64 => ("onnxruntime-gpu", CUDA_NOTE),
    };
    vec![
        ("pip_package", pip_package.to_string()),
        ("runtime_note", runtime_note.to_string()),
        ("package_id", m.package_id.clone()),
        ("package_file", package_file.to_string()),
        ("target", m.target.to_string()),
        ("arch", model.arch.clone()),
        (
            "role",
            serde_json::to_string(&model.role)
                .unwrap_or_default()
                .replace('"', ""),
        ),
        ("num_classes", model.class_names.len().to_string()),
        ("classes_table", classes),
        ("input_size", model.input_size.to_string()),
        ("input_name", model.input_name.clone()),
        ("output_name", model.output_name.clone()),
        ("onnx_path", model.onnx.clone()),
        ("opset", model.opset.to_string()),
        ("resize", p.resize.to_string()),
        ("crop", p.crop.to_string()),
        (
            "interpolation",
            format!("{:?}", p.interpolation).to_lowercase(),
        ),
        ("mean", floats(p.mean)),
        ("std", floats(p.std)),
        ("runtime_version", m.runtime.version.clone()),
        ("runtime_library", m.runtime.library.clone()),
        ("checkpoint_sha256", model.checkpoint_sha256.clone()),
        ("created", m.created.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_known_names_and_refuses_unknown_ones() {
        let vars = [("arch", "lcnet_050".to_string())];
        assert_eq!(
            render("a {{arch}} b {{ arch }}", &vars).unwrap(),
            "a lcnet_050 b lcnet_050"
        );
        assert_eq!(render("no variables", &vars).unwrap(), "no variables");
        let err = render("{{archh}}", &vars).unwrap_err();
        assert_eq!(err, "unknown template variable 'archh'");
        assert!(render("x {{arch", &vars).unwrap_err().contains("unclosed"));
    }
}

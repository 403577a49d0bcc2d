//! The facts of one package that its README and examples show.

use std::collections::BTreeMap;

use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::{CudaNeeds, PackageManifest, PackagedModel, Target};

/// Placeholder name -> text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    values: BTreeMap<String, String>,
}

impl Facts {
    /// The facts of the package `manifest` describes (its `files` may still
    /// be incomplete: none of them is used).
    pub fn from_manifest(manifest: &PackageManifest) -> Facts {
        let model = &manifest.model;
        let spec = &model.preprocess;
        let mut facts = Facts::default();
        facts.insert("package_id", &manifest.package_id);
        facts.insert("target", manifest.target.as_str());
        facts.insert("arch", &model.arch);
        facts.insert(
            "role",
            match model.role {
                Role::Large => "large",
                Role::Small => "small",
            },
        );
        facts.insert("num_classes", &model.class_names.len().to_string());
        facts.insert("class_table", &class_table(&model.class_names));
        facts.insert("input_size", &model.input_size.to_string());
        facts.insert("input_name", &model.input_name);
        facts.insert("output_name", &model.output_name);
        facts.insert("opset", &model.opset.to_string());
        facts.insert("resize", &spec.resize.to_string());
        facts.insert("crop", &spec.crop.to_string());
        facts.insert(
            "interpolation",
            &format!("{:?}", spec.interpolation).to_lowercase(),
        );
        facts.insert("mean", &format!("{:?}", spec.mean));
        facts.insert("std", &format!("{:?}", spec.std));
        facts.insert("runtime_version", &manifest.runtime.version);
        facts.insert("runtime_library", &manifest.runtime.library);
        facts.insert("sdk_version", env!("CARGO_PKG_VERSION"));
        facts.insert("onnx_path", &model.onnx);
        facts.insert("checkpoint_sha256", &model.checkpoint_sha256);
        facts.insert("created", &manifest.created);
        let (pip_package, runtime_note) = match manifest.target {
            Target::CpuX86_64 => ("onnxruntime", String::new()),
            Target::CudaX86_64 => ("onnxruntime-gpu", cuda_note(manifest)),
        };
        facts.insert("pip_package", pip_package);
        facts.insert("runtime_note", &runtime_note);
        facts.insert("precision_section", &precision_section(model));
        facts
    }

    /// Sets (or replaces) one fact.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }

    /// The fact called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every fact's name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// A README section on an int8 model: how it was made and the accuracy
/// the export measured; empty for a float model.
/// Said in a CUDA package's README after its first paragraph: what the
/// machine must provide, as the export read it from the CUDA build of ONNX
/// Runtime (manifest `runtime.cuda`), so a buyer can check a machine before
/// the first call fails.
fn cuda_note(manifest: &PackageManifest) -> String {
    let fallback = "Without them, loading the model stops with an error naming what \
                    is missing; `bin/infer --allow-cpu-fallback` (in C: \
                    `SEMICLASS_ALLOW_CPU_FALLBACK=1`) runs it on the CPU instead, with a \
                    warning, and the cpu-x86_64 package runs on any x86-64 CPU.";
    let Some(needs) = &manifest.runtime.cuda else {
        return format!(
            "\n\nThis CUDA build needs an NVIDIA GPU with its driver, CUDA and cuDNN \
             (the versions onnxruntime.ai lists for ONNX Runtime {}). {fallback}",
            manifest.runtime.version
        );
    };
    format!(
        "\n\nThis CUDA build needs an NVIDIA GPU with its driver and {versions}: \
         the libraries {libraries}{pip}. {fallback}",
        versions = needs.versions(),
        libraries = code_list(&needs.libraries),
        pip = pip_clause(needs),
    )
}

/// ` (pip: `a`, `b`)`, or nothing when the wheel named no requirement.
fn pip_clause(needs: &CudaNeeds) -> String {
    if needs.pip.is_empty() {
        return String::new();
    }
    format!(" (pip: {})", code_list(&needs.pip))
}

/// `` `a`, `b` ``.
fn code_list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn precision_section(model: &PackagedModel) -> String {
    let Some(q) = &model.quantization else {
        return String::new();
    };
    let (c, e) = (&q.calibration, &q.evaluation);
    format!(
        "\n## Precision: int8\n\n\
         The model is statically quantized (QDQ: QuantizeLinear/DequantizeLinear \
         pairs around float operators, which ONNX Runtime runs on its 8-bit kernels). \
         Weights: {weights}. Activations: {activations}, ranges calibrated on {ci} \
         images of {cs} ({method}).\n\n\
         | measured on {ei} images of {es}, none used for calibration | top-1 |\n\
         |---|---|\n\
         | fp32 model | {fp32:.2}% |\n\
         | this int8 model | {int8:.2}% |\n\
         | same top-1 class as fp32 | {agree:.2}% |\n",
        weights = q.weights,
        activations = q.activations,
        ci = c.images,
        cs = c.source,
        method = c.method,
        ei = e.images,
        es = e.source,
        fp32 = e.fp32_top1 * 100.0,
        int8 = e.int8_top1 * 100.0,
        agree = e.top1_agreement * 100.0,
    )
}

/// Markdown table rows `| id | name |`; `|` in a name is escaped.
fn class_table(names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(id, name)| format!("| {id} | {} |", name.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join("\n")
}

//! `manifest.json` of an export package (DESIGN.md section 7): what the
//! exporter writes and what the SDK and the server check before loading a
//! model. Every file of the package is listed with its sha256, so a swapped
//! or edited file is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PreprocessSpec;
use crate::checkpoint::Role;
use crate::quantization::{Precision, Quantization};

/// The newest version this code reads and writes; readers refuse newer
/// ones. Version 2 adds [`PackagedModel::encryption`]: a package whose model
/// is encrypted is written as version 2, so that an older reader refuses it
/// with "use a newer semiclass" instead of handing ONNX Runtime ciphertext;
/// a package in clear is still written as version 1.
pub const PACKAGE_FORMAT_VERSION: u32 = 2;
/// The version of a package whose model is in clear.
pub const CLEAR_PACKAGE_FORMAT_VERSION: u32 = 1;

/// The file name of the manifest at the root of a package.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The runtime a package is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    #[serde(rename = "cpu-x86_64")]
    CpuX86_64,
    #[serde(rename = "cuda-x86_64")]
    CudaX86_64,
}

impl Target {
    /// Every target, in the order the CLI lists them.
    pub const ALL: [Target; 2] = [Target::CpuX86_64, Target::CudaX86_64];

    /// The name used on the command line and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::CpuX86_64 => "cpu-x86_64",
            Target::CudaX86_64 => "cuda-x86_64",
        }
    }

    /// Parses a command-line name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model inside a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackagedModel {
    /// timm model name, e.g. `lcnet_050`.
    pub arch: String,
    pub role: Role,
    /// Index i is the name of logit i.
    pub class_names: Vec<String>,
    /// Square input side in pixels.
    pub input_size: u32,
    pub preprocess: PreprocessSpec,
    /// Package-relative path of the ONNX file, e.g. `model/model.onnx`.
    pub onnx: String,
    pub opset: i64,
    /// Name of the graph input (NCHW float32, dynamic batch).
    pub input_name: String,
    /// Name of the graph output (logits, `[batch, classes]`).
    pub output_name: String,
    /// sha256 of the checkpoint the model was exported from.
    pub checkpoint_sha256: String,
    /// How the model file is encrypted; `None` for a model in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ModelEncryption>,
    /// float32 or int8; absent (float32) in packages made before int8.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// How an int8 model was calibrated and what it was measured to lose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
}

/// The model file of an SDK package is the ONNX model encrypted with a
/// content key of its own; the key travels only sealed: here to the
/// vendor's keys (so the issuer can put it in licenses), in a license to
/// the one activated machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEncryption {
    /// The AEAD, [`MODEL_CIPHER`].
    pub cipher: String,
    /// The AEAD nonce, lowercase hex.
    pub nonce: String,
    /// The content key sealed to each vendor key that may issue licenses.
    pub vendor_keys: Vec<VendorSealedKey>,
}

/// The only model cipher written and read.
pub const MODEL_CIPHER: &str = "chacha20-poly1305";

/// The content key sealed to one vendor key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSealedKey {
    /// The id of the vendor's signing key (as in the keyring).
    pub key_id: String,
    pub sealed: SealedBox,
}

/// A secret sealed to one X25519 public key: an ephemeral X25519 key, the
/// shared secret through HKDF-SHA256, then ChaCha20-Poly1305 (ECIES).
/// Every field is lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedBox {
    pub ephemeral_public: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The ONNX Runtime shipped in the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagedRuntime {
    /// ONNX Runtime version, e.g. `1.32.0`.
    pub version: String,
    /// Package-relative path of the main shared library.
    pub library: String,
    /// What a CUDA build needs from the machine; absent for the CPU build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<CudaNeeds>,
}

/// What the CUDA build of ONNX Runtime needs beyond the package, read at
/// export from its CUDA provider library's dynamic dependencies (ELF
/// NEEDED) and its wheel's metadata, so that a machine without them is told
/// exactly what is missing instead of ONNX Runtime's first dlopen error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaNeeds {
    /// Package-relative path of the CUDA provider library.
    pub provider: String,
    /// Libraries the provider links that neither the package nor a base
    /// Linux system has, in link order (`libcublasLt.so.13`, ...,
    /// `libcuda.so.1`: the NVIDIA driver).
    pub libraries: Vec<String>,
    /// CUDA's major version, from `libcudart.so.<major>`.
    pub cuda: Option<String>,
    /// cuDNN's major version, from the wheel's `nvidia-cudnn-cu*` requirement
    /// (the provider loads cuDNN at run time, so its NEEDED entries omit it).
    pub cudnn: Option<String>,
    /// The wheel's own pip requirements for CUDA and cuDNN
    /// (`nvidia-cuda-runtime~=13.0`, ...), for the user to install.
    pub pip: Vec<String>,
}

impl CudaNeeds {
    /// `CUDA 13 and cuDNN 9`, for messages.
    pub fn versions(&self) -> String {
        let known =
            |v: &Option<String>| v.clone().unwrap_or_else(|| "(version not recorded)".into());
        format!(
            "CUDA {} and cuDNN {}",
            known(&self.cuda),
            known(&self.cudnn)
        )
    }
}

/// Whether the package runs only after activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseRequirement {
    pub required: bool,
}

/// The whole `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageManifest {
    pub format_version: u32,
    /// Identifies the package for licensing, e.g. `lcnet_050-cpu-x86_64-1a2b3c4d`.
    pub package_id: String,
    pub target: Target,
    pub model: PackagedModel,
    pub runtime: PackagedRuntime,
    pub license: LicenseRequirement,
    /// UTC time of writing, RFC 3339.
    pub created: String,
    /// Package-relative path -> lowercase hex sha256 of every file except
    /// the manifest itself.
    pub files: BTreeMap<String, String>,
}

/// The zip a package is shipped as: `<model>-<target>.zip`.
pub fn package_file_name(arch: &str, target: Target) -> String {
    format!("{arch}-{target}.zip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip() {
        for target in Target::ALL {
            assert_eq!(Target::parse(target.as_str()), Some(target));
            let json = serde_json::to_string(&target).unwrap();
            assert_eq!(json, format!("\"{}\"", target.as_str()));
        }
        assert_eq!(Target::parse("cpu"), None);
    }
}

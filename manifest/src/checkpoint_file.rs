//! The read side of checkpoint files, without a tensor library.
//!
//! A checkpoint is a `.safetensors` file of the model's tensors in timm's
//! names; its [`CheckpointMeta`] travels inside it as JSON under the
//! [`META_KEY`] key of the header's `__metadata__` map (the trainer writes
//! it, see `semiclass_trainer::checkpoint`). The exporter reads checkpoints
//! here, so exporting never needs libtorch; the trainer reads them here too
//! and only turns the tensor views into tch tensors.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::View;
use sha2::{Digest, Sha256};

use crate::checkpoint::{CHECKPOINT_FORMAT_VERSION, CheckpointMeta};

/// `__metadata__` key of a checkpoint's [`CheckpointMeta`].
pub const META_KEY: &str = "semiclass";
/// `__metadata__` key of a resume file's JSON state.
pub const STATE_KEY: &str = "semiclass_state";
/// safetensors' own limit on the header size.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A checkpoint or resume file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "{path}: cannot write: {error}; check that the folder exists, is writable and has free space"
    )]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file ({message}); is it complete?")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: no semiclass metadata, so not a semiclass checkpoint (a plain weight file such \
         as timm's?); use it as pretrained weights instead"
    )]
    NoMeta { path: PathBuf },
    #[error("{path}: a resume state file, not a checkpoint; pass the checkpoint (weights) file")]
    StateNotCheckpoint { path: PathBuf },
    #[error("{path}: not a resume state file; pass the run's resume state file")]
    NotState { path: PathBuf },
    #[error("{path}: invalid semiclass metadata: {message}")]
    BadMeta { path: PathBuf, message: String },
    #[error(
        "{path}: checkpoint format version {found}, but this semiclass reads up to \
         {supported}; use a newer semiclass"
    )]
    Version {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("{path}: tensor '{name}': {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: metric '{name}' is {value}, which JSON cannot store; report a finite value")]
    Metric {
        path: PathBuf,
        name: String,
        value: f64,
    },
}

/// A whole checkpoint or resume file in memory: its `__metadata__` map and
/// its bytes, which [`CheckpointBytes::tensors`] views without copying.
pub struct CheckpointBytes {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    bytes: Vec<u8>,
}

impl CheckpointBytes {
    /// Reads `path` and checks that it is a safetensors file.
    pub fn read(path: &Path) -> Result<CheckpointBytes, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|error| read_error(path, error))?;
        let metadata = read_header(path, &mut bytes.as_slice(), bytes.len() as u64)?;
        SafeTensors::deserialize(&bytes).map_err(|e| format_error(path, e))?;
        Ok(CheckpointBytes {
            path: path.to_path_buf(),
            metadata,
            bytes,
        })
    }

    /// The tensors, viewed in place.
    pub fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked by CheckpointBytes::read")
    }

    /// The sha256 of the file, lowercase hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }

    /// The checkpoint metadata; an error for a resume file or a plain weight file.
    pub fn meta(&self) -> Result<CheckpointMeta, CheckpointError> {
        meta_from(&self.path, &self.metadata)
    }
}

/// Serializes `tensors` and the `__metadata__` map `metadata` as the
/// bytes of a safetensors file that depend on nothing else: the same
/// tensors and metadata give the same bytes in every run. safetensors
/// writes its metadata map in hash order, which varies between runs (and
/// with it the file's sha256 and every package id derived from the model);
/// here the header is written again with its keys in sorted order.
pub fn serialize_sorted<V: View>(
    path: &Path,
    tensors: Vec<(String, V)>,
    metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>, CheckpointError> {
    let metadata: HashMap<String, String> = metadata.into_iter().collect();
    let bytes =
        safetensors::serialize(tensors, &Some(metadata)).map_err(|e| format_error(path, e))?;
    sort_header(path, bytes)
}

/// `bytes` of a safetensors file with its JSON header's keys sorted
/// (serde_json's map is ordered by key) and padded to 8 bytes as
/// safetensors pads it; the tensor data is untouched.
fn sort_header(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, CheckpointError> {
    let n = bytes
        .get(..8)
        .map(|n| u64::from_le_bytes(n.try_into().expect("8 bytes")) as usize)
        .filter(|&n| n <= bytes.len() - 8)
        .ok_or_else(|| format_error(path, "no complete header"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| format_error(path, e))?;
    let mut sorted = serde_json::to_vec(&header).expect("a JSON value serializes");
    sorted.resize(sorted.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + sorted.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&sorted);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Reads the metadata of a checkpoint from its header only.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let mut file = std::fs::File::open(path).map_err(|error| read_error(path, error))?;
    let len = file
        .metadata()
        .map_err(|error| read_error(path, error))?
        .len();
    let header = read_header(path, &mut file, len)?;
    meta_from(path, &header)
}

/// The sha256 of a file, lowercase hex (as `sha256sum` prints it).
pub fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let file = std::fs::File::open(path).map_err(|error| read_error(path, error))?;
    sha256_reader(file).map_err(|error| read_error(path, error))
}

/// The sha256 of everything `reader` yields, lowercase hex.
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_error(path: &Path, error: std::io::Error) -> CheckpointError {
    CheckpointError::Read {
        path: path.to_path_buf(),
        error,
    }
}

/// A [`CheckpointError::Format`] for `path`.
pub fn format_error(path: &Path, message: impl ToString) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The header's `__metadata__` map (empty if it has none), read from the
/// start of a safetensors file of `len` bytes.
fn read_header(
    path: &Path,
    reader: &mut impl Read,
    len: u64,
) -> Result<HashMap<String, String>, CheckpointError> {
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: Option<HashMap<String, String>>,
    }
    let read = |reader: &mut dyn Read, buf: &mut [u8]| {
        reader.read_exact(buf).map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => format_error(path, "the file ends in its header"),
            _ => read_error(path, error),
        })
    };
    let mut n = [0u8; 8];
    read(reader, &mut n)?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n > len.saturating_sub(8) {
        let message = format!("a header of {n} bytes in a file of {len}");
        return Err(format_error(path, message));
    }
    let mut header = vec![0u8; n as usize];
    read(reader, &mut header)?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| format_error(path, e))?;
    Ok(header.metadata.unwrap_or_default())
}

/// The checkpoint metadata in a header's `__metadata__` map.
fn meta_from(
    path: &Path,
    header: &HashMap<String, String>,
) -> Result<CheckpointMeta, CheckpointError> {
    let path_buf = || path.to_path_buf();
    let Some(json) = header.get(META_KEY) else {
        return Err(match header.contains_key(STATE_KEY) {
            true => CheckpointError::StateNotCheckpoint { path: path_buf() },
            false => CheckpointError::NoMeta { path: path_buf() },
        });
    };
    let bad = |message: String| CheckpointError::BadMeta {
        path: path_buf(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    // The version first: a newer format may not parse as this one.
    let found = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no format_version".into()))?;
    if found > u64::from(CHECKPOINT_FORMAT_VERSION) {
        return Err(CheckpointError::Version {
            path: path_buf(),
            found,
            supported: CHECKPOINT_FORMAT_VERSION,
        });
    }
    serde_path_to_error::deserialize(&value).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        // `printf abc | sha256sum`
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(sha256_reader(&b"abc"[..]).unwrap(), abc);
    }

    #[test]
    fn truncated_and_junk_files_are_format_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"PK\x03\x04 not a tensor file").unwrap();
        let err = CheckpointBytes::read(&junk).err().unwrap().to_string();
        assert!(err.starts_with(&junk.display().to_string()), "{err}");
        assert!(err.contains("not a valid safetensors file"), "{err}");
        std::fs::write(&junk, b"\x02\x00").unwrap();
        let err = read_meta(&junk).unwrap_err().to_string();
        assert!(err.contains("ends in its header"), "{err}");
    }

    #[test]
    fn the_same_tensors_and_metadata_always_give_the_same_bytes() {
        let path = Path::new("w.safetensors");
        let data: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let file = || {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data);
            let metadata = BTreeMap::from(
                ["semiclass", "format", "a", "b", "c", "d"].map(|k| (k.to_string(), k.repeat(3))),
            );
            serialize_sorted(path, vec![("w".to_string(), view.unwrap())], metadata).unwrap()
        };
        // Each serialization hashes its metadata map with new random keys:
        // 20 runs in the same order by chance are about 1 in 720^19.
        let first = file();
        for _ in 0..20 {
            assert_eq!(file(), first);
        }
        let read = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(read.tensor("w").unwrap().data(), &data[..]);
        let (n, header) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(n % 8, 0);
        assert_eq!(
            header.metadata().as_ref().unwrap()["format"],
            "formatformatformat"
        );
        let text = String::from_utf8(first[8..8 + n].to_vec()).unwrap();
        let keys: Vec<usize> = [
            "\"a\"",
            "\"b\"",
            "\"c\"",
            "\"d\"",
            "\"format\"",
            "\"semiclass\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(keys.is_sorted(), "{text}");
    }
}

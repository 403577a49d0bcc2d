//! Helpers: locating the built binaries, building small datasets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{DynamicImage, ImageFormat};

/// Path of a workspace binary next to this test executable
/// (`target/<profile>/deps/e2e-*` -> `target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// The result of running a command: exit code and both streams as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().expect("exited normally, not by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn semiclass(args: &[&str]) -> Run {
    command("semiclass")
        .args(args)
        .output()
        .expect("runs")
        .into()
}

/// A command running workspace binary `name`, with the run registry in the
/// build's temporary folder rather than the user's data folder (tests
/// about the registry give their own with `--registry`).
pub fn command(name: &str) -> Command {
    let mut command = Command::new(binary(name));
    let registry = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-registry.sqlite");
    command.env("SEMICLASS_REGISTRY", registry);
    // The training commands choose their own OpenMP spin unless these are
    // set (trainer/src/openmp.rs); a developer's setting must not change
    // what the tests see.
    command
        .env_remove("GOMP_SPINCOUNT")
        .env_remove("OMP_WAIT_POLICY");
    command
}

/// The committed image fixtures (CMYK, EXIF, 0x0 GIF) of tests/fixtures/images.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/images")
        .join(name)
}

/// A small valid dataset: 2 classes, 4 labeled, 2 unlabeled, 2 val images.
pub struct TinyDataset {
    pub dir: tempfile::TempDir,
}

impl TinyDataset {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = TinyDataset { dir };
        for name in ["a0", "a1", "b0", "b1", "u0", "u1", "v0", "v1"] {
            t.image(&format!("images/{name}.png"), 32, 32);
        }
        t.write("label.txt", "0 cat\n1 dog\n");
        t.write(
            "train.txt",
            "images/a0.png 0\nimages/a1.png 0\nimages/b0.png 1\nimages/b1.png 1\n",
        );
        t.write("train_unlabeled.txt", "images/u0.png\nimages/u1.png\n");
        t.write("val.txt", "images/v0.png 0\nimages/v1.png 1\n");
        t
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    pub fn write(&self, rel: &str, text: &str) {
        self.write_bytes(rel, text.as_bytes());
    }

    pub fn write_bytes(&self, rel: &str, bytes: &[u8]) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A distinct RGB PNG (distinct bytes: the check flags identical files).
    pub fn image(&self, rel: &str, width: u32, height: u32) {
        let seed = rel
            .bytes()
            .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([seed, (x * 7) as u8, (y * 5) as u8])
        });
        self.save(rel, &DynamicImage::ImageRgb8(img), ImageFormat::Png);
    }

    pub fn save(&self, rel: &str, img: &DynamicImage, format: ImageFormat) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save_with_format(path, format).unwrap();
    }

    pub fn check(&self) -> Run {
        semiclass(&["check", self.arg()])
    }

    /// Every file under the dataset except the check's own output folder.
    pub fn files_outside_check_folder(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        collect(self.path(), self.path(), &mut files);
        files.retain(|(p, _)| !p.starts_with("check"));
        files.sort();
        files
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            collect(root, &path, out);
        } else if path.is_file() {
            out.push((
                path.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
}

/// A PNG file from `(chunk type, data)` pairs, CRCs included.
pub fn png_chunks(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in chunks {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&kind[..]);
        crc.update(data);
        out.extend(&kind[..]);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    out
}

pub fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes `PREFIX-images-idx3-ubyte.gz` and `PREFIX-labels-idx1-ubyte.gz`
/// into `dir` in Fashion-MNIST's IDX layout: `pixels` holds the 28x28 images
/// one after the other, `labels` one class per image.
pub fn write_idx_split(dir: &Path, prefix: &str, pixels: &[u8], labels: &[u8]) {
    let n = labels.len() as u32;
    assert_eq!(pixels.len(), labels.len() * 784, "28x28 pixels per label");
    let write_gz = |name: String, header: &[u32], data: &[u8]| {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let header: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        std::io::Write::write_all(&mut gz, &header).unwrap();
        std::io::Write::write_all(&mut gz, data).unwrap();
        gz.finish().unwrap();
    };
    write_gz(
        format!("{prefix}-images-idx3-ubyte.gz"),
        &[0x0803, n, 28, 28],
        pixels,
    );
    write_gz(
        format!("{prefix}-labels-idx1-ubyte.gz"),
        &[0x0801, n],
        labels,
    );
}

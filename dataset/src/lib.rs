//! The ClsLMSSLDataset format of DESIGN.md section 4.
//!
//! ```text
//! dataset_dir/
//!   images/               any sub-folders
//!   label.txt             "id name" per line
//!   train.txt             "path id" per line (labeled)
//!   train_unlabeled.txt   "path" per line
//!   val.txt               "path id" per line
//!   test.txt              optional, "path id": evaluation only
//! ```
//!
//! This crate knows nothing of tensors or training: it reads and checks the
//! format, so `semiclass check` runs (and is tested) without libtorch.

pub mod check;
pub mod fashion_mnist;
pub mod fsutil;
pub mod lists;
pub mod load;
pub mod open;
pub mod paths;
pub mod problem;
pub mod report;

pub use check::{CheckError, CheckOptions, CheckReport, ListReport, check_dataset, check_list};
pub use open::{Dataset, OpenError};
pub use problem::{Location, Problem, Problems, Severity};

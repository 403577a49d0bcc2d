//! The model zoo against timm: same weights, same input, same logits; and
//! its ONNX export against tch (`export`).
//!
//! Fixtures come from tests/fixtures/make_models.py (run by `make test`).

mod export;
mod parity;
mod train_mode;
mod weights;

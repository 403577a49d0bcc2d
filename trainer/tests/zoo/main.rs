//! The model zoo against timm: same weights, same input, same logits.
//!
//! Fixtures come from tests/fixtures/make_models.py (run by `make test`).

mod parity;
mod train_mode;
mod weights;

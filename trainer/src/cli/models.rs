//! `semiclass models`: the zoo, with sizes.

use std::process::ExitCode;

use semiclass_models::registry::{MODELS, SEED_NAMES};
use semiclass_models::{Model, ModelOptions};

/// Prints every model: timm name, family, parameters (with a 1000-class
/// head, as usually quoted), default input size, and the seed's name.
pub fn run() -> anyhow::Result<ExitCode> {
    println!(
        "{:<32} {:<12} {:>9} {:>6}  seed name",
        "name", "family", "params", "input"
    );
    for entry in MODELS {
        let options = ModelOptions::new(1000, entry.default_input);
        let model = Model::new(entry.name, options)?;
        let seed = SEED_NAMES
            .iter()
            .find(|(_, timm)| *timm == entry.name)
            .map_or("", |(seed, _)| seed);
        println!(
            "{:<32} {:<12} {:>8.1}M {:>6}  {seed}",
            entry.name,
            entry.family,
            model.param_count() as f64 / 1e6,
            entry.default_input
        );
    }
    Ok(ExitCode::SUCCESS)
}

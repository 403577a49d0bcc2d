//! Embeds the libtorch folder that torch-sys linked against as the binary's
//! run path, so `semiclass` runs without LD_LIBRARY_PATH.

fn main() {
    // Exported by torch-sys (`links = "tch"`) to crates that depend on it directly.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

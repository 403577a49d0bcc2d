//! Compiles the c10d shim the way torch-sys compiles its own wrapper: the
//! wheel's headers, C++17, the same C++ ABI as libtorch, linked against
//! libtorch_cpu and c10 (which export the TCPStore and Gloo symbols).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys exports DEP_TCH_LIBTORCH_LIB (links = \"tch\")"),
    );
    // torch-sys's layout: <torch>/lib and <torch>/include side by side.
    let include = lib
        .parent()
        .expect("libtorch lib dir has a parent")
        .join("include");
    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .file("shim/c10d_shim.cpp")
        .file("shim/sum_over_ranks.cpp")
        .file("shim/reducer.cpp")
        // Our gloo stand-ins (shim/gloo/forward.h says why) come first.
        .include("shim")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // ProcessGroupGloo.hpp is empty unless the build had Gloo, as the wheel's did.
        .flag("-DUSE_C10D_GLOO")
        .flag("-Wno-unused-parameter")
        .warnings(false)
        .compile("semiclass_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
}

/// The ABI libtorch was built with, asked of the same Python torch-sys asked
/// (LIBTORCH_USE_PYTORCH); otherwise LIBTORCH_CXX11_ABI, default 1 as in torch-sys.
fn cxx11_abi() -> String {
    if let Ok(abi) = std::env::var("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    let asked = Command::new("python3")
        .args([
            "-c",
            "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
        ])
        .output();
    match asked {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "1".to_string(),
    }
}

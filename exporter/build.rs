//! ONNX's protobuf types, generated from the vendored `proto/onnx.proto`
//! with protox (a protobuf compiler in Rust), so no `protoc` is needed.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors =
        protox::compile(["onnx.proto"], ["proto"]).expect("proto/onnx.proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost-build generates the ONNX types");
}

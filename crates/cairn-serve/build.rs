//! Generates the gRPC server of the Open Inference Protocol from proto/inference.proto.
//!
//! The .proto is compiled by protox (pure Rust), so no protoc binary is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let proto = dir.join("inference.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&dir])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .build_transport(false)
        // Tensor bytes as `bytes::Bytes`: sliced from the received buffer, not copied.
        .bytes(".inference")
        .compile_fds(descriptors)?;
    Ok(())
}

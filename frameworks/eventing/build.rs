//! Compiles the eventing service's gRPC API (proto/eventing.proto) with
//! protox (pure Rust, no `protoc`) into prost messages and a tonic server
//! and client.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true);
    compiler.open_file(root.join("eventing.proto"))?;
    let fds = compiler.file_descriptor_set();
    let config = prost_build::Config::new();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

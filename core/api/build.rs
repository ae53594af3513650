//! Compiles the Mesos v1 protos and Corral's internal protocol with protox
//! (pure Rust, no `protoc` needed) and generates prost/tonic code plus the
//! descriptor set the JSON codec reflects over.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "mesos/v1/mesos.proto",
    "mesos/v1/scheduler/scheduler.proto",
    "mesos/v1/executor/executor.proto",
    "mesos/v1/master/master.proto",
    "mesos/v1/agent/agent.proto",
    "corral/internal.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true);
    for p in PROTOS {
        compiler.open_file(root.join(p))?;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();

    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.include_file("protos.rs");
    // Keep `Resource` small: it is copied on the allocator's hot path and
    // DiskInfo (with its nested Volume) is most of its size.
    config.boxed(".mesos.v1.Resource.disk");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

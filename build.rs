//! Compiles `proto/` with protox (pure Rust, no `protoc` needed) into tonic/prost code and a descriptor set.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["checkpoint/v1/checkpoint.proto", "checkpoint/v1/diagnostics.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).open_files(PROTO_FILES)?;
    std::fs::write(out_dir.join("checkpoint_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .codec_path("crate::grpc::codec::Codec")
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

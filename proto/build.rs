//! Compiles `jetsweep.proto` (and KEDA's `externalscaler.proto`) with protox (pure Rust; no system `protoc`) into tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=jetsweep.proto");
    println!("cargo:rerun-if-changed=externalscaler.proto");
    let descriptors = protox::compile(["jetsweep.proto", "externalscaler.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    // jetsweep.proto's descriptors alone, for gRPC server reflection (`grpcurl` without the file).
    let served = protox::compile(["jetsweep.proto"], ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("jetsweep_descriptor.bin"),
        prost::Message::encode_to_vec(&served),
    )?;
    Ok(())
}

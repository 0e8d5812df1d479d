//! Compiles `jetsweep.proto` with protox (pure Rust; no system `protoc`) into tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=jetsweep.proto");
    let descriptors = protox::compile(["jetsweep.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

//! Compiles `mcpwarden/v1/*.proto` with protox (pure Rust, no `protoc`) and generates the
//! prost messages and tonic client/server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["mcpwarden/v1/records.proto", "mcpwarden/v1/export.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

//! Embeds the eBPF object built by `cargo xtask build-ebpf` (the one build mechanism; this
//! script only locates its output). Without the object the agent still compiles — unit tests
//! and clippy need no nightly toolchain — and `mcpwarden run` says how to build it.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mcpwarden_embedded)");
    println!("cargo::rerun-if-env-changed=MCPWARDEN_EBPF_OBJECT");
    let path = match std::env::var_os("MCPWARDEN_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest =
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            manifest.join("../target/bpfel-unknown-none/release/mcpwarden-ebpf.o")
        }
    };
    println!("cargo::rerun-if-changed={}", path.display());
    if path.is_file() {
        println!("cargo::rustc-cfg=mcpwarden_embedded");
        println!(
            "cargo::rustc-env=MCPWARDEN_EBPF_OBJECT_PATH={}",
            path.display()
        );
    } else {
        println!(
            "cargo::warning=eBPF object {} not found: building without it (run `cargo xtask build`)",
            path.display()
        );
    }
}

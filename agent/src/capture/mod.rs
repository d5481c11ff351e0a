//! Kernel capture: preflight checks, loading and attaching the eBPF programs, and reading the
//! ring buffer into typed [`KernelEvent`]s. The only module that talks to the kernel.

pub mod attach;
pub mod body_skips;
pub mod counters;
pub mod discovery;
pub mod drain;
pub mod error;
pub mod events;
pub mod kernel_enforce;
pub mod libc_hold;
pub mod mcp_procs;
pub mod preflight;
pub mod preload;
pub mod progstats;
pub mod ssl_sites;
pub mod tls;
pub mod tls_scope;
pub mod tpformat;

pub use attach::Capture;
pub use error::CaptureError;
pub use events::{ConnIdent, KernelEvent};

/// The embedded eBPF object (empty when the agent was built without it).
#[cfg(mcpwarden_embedded)]
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("MCPWARDEN_EBPF_OBJECT_PATH"));
#[cfg(not(mcpwarden_embedded))]
pub static EBPF_OBJECT: &[u8] = &[];

//! Load-time configuration, written into the object's globals before load
//! (`EbpfLoader::set_global`): read with one load, no map lookup on the hot path.

/// Global holding the agent's own tgid: its syscalls are never traced.
pub const GLOBAL_SELF_TGID: &str = "MCPW_SELF_TGID";
/// Global holding a tgid to trace exclusively (0: every process).
pub const GLOBAL_TARGET_TGID: &str = "MCPW_TARGET_TGID";
/// Global switching exchange skipping (agent-ebpf `exchange.rs`): 1 skips the HTTP exchanges
/// that cannot be MCP (the default), 0 carries every exchange.
pub const GLOBAL_SKIP_EXCHANGES: &str = "MCPW_SKIP_EXCHANGES";

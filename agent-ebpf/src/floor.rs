//! The cost floor for `cargo xtask bench`: empty programs of the same types as the agent's
//! own (uprobe, uretprobe, tracepoint). Attached by `mcpwarden floor --hooks own|obvious`,
//! never by `mcpwarden run`. They do nothing at all, so what a request pays with them
//! attached is the price of the traps alone: the agent's figures are compared with it.

use aya_ebpf::{
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

// uprobe: any symbol (the floor attaches it at the entry of SSL_read/SSL_write/_ex).
#[uprobe]
pub fn floor_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

// uretprobe: any symbol (the floor attaches it at the return of SSL_read/SSL_write/_ex).
#[uretprobe]
pub fn floor_uretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

// tracepoint: any event (sock:*, sched:sched_process_exec, syscalls:sys_{enter,exit}_*).
#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

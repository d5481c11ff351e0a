//! Cheap accessors: direct loads from the tracepoint context (no helper call) and the
//! load-time globals.

use aya_ebpf::{programs::TracePointContext, EbpfContext};

/// The agent's own tgid (set at load): never traced.
#[unsafe(no_mangle)]
static MCPW_SELF_TGID: u32 = 0;
/// A tgid to trace exclusively; 0 traces every process.
#[unsafe(no_mangle)]
static MCPW_TARGET_TGID: u32 = 0;

/// Reads a field of the tracepoint record at `off` (offsets from the event's `format`).
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: tracepoint contexts are readable up to the record size; offsets come from the
    // tracepoint formats documented next to each caller and the verifier checks the bounds.
    unsafe { core::ptr::read_unaligned(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) }
}

/// True when this process must not be traced (the agent itself, or outside the target).
#[inline(always)]
pub fn skip_tgid(tgid: u32) -> bool {
    // SAFETY: plain reads of 'static globals; volatile so the loader's value is used, not 0.
    let me = unsafe { core::ptr::read_volatile(&MCPW_SELF_TGID) };
    let target = unsafe { core::ptr::read_volatile(&MCPW_TARGET_TGID) };
    tgid == me || (target != 0 && tgid != target)
}

//! The dynamic loader's link-map hook: tells userspace at once that a process mapped (or
//! unmapped) a library, so a TLS library loaded by `dlopen` after the process started (e.g.
//! Python's `import ssl`) gets its uprobes before its first `SSL_write`, instead of at the
//! next periodic rescan.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};
use mcpwarden_common::{
    counters::Counter,
    event::{EventHeader, EventKind},
};

use crate::{
    ctx::skip_tgid,
    maps::{count, EVENTS},
};

// uprobe: void _dl_debug_state(void) — glibc `elf/dl-debug.c` (every version; exported by
// ld-linux-*.so.* / ld-2.*.so), musl `ldso/dynlink.c`. The loader calls it after each change
// of `_r_debug.r_state` (RT_ADD or RT_DELETE, then RT_CONSISTENT): twice per dlopen/dlclose.
// Rare; userspace coalesces the two calls and rate-limits per process.
#[uprobe]
pub fn dl_debug_state(_ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if skip_tgid(tgid) {
        return 0;
    }
    let ev = EventHeader {
        kind: EventKind::LinkMapChange as u32,
        tgid,
        tid: id as u32,
        fd: 0,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        conn_start_ns: 0,
    };
    if EVENTS.output::<EventHeader>(&ev, 0).is_err() {
        count(Counter::RingFull, 1);
    }
    0
}

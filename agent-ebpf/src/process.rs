//! Process events userspace needs to find new TLS libraries promptly.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use mcpwarden_common::{
    counters::Counter,
    event::{EventHeader, EventKind},
};

use crate::{
    ctx::skip_tgid,
    maps::{count, EVENTS},
};

// sched:sched_process_exec: a process image was replaced. Userspace scans its executable
// (it may export the SSL_* symbols, like node) right away. Rare event.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if skip_tgid(tgid) {
        return 0;
    }
    let ev = EventHeader {
        kind: EventKind::ProcessExec as u32,
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

//! Process events: execs userspace needs to find new TLS libraries promptly, and thread exits
//! that end per-thread kernel state.

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
    ctx::{field, skip_tgid},
    maps::{
        count, ARGS, EVENTS, LAST_READ_FD, PENDING_WRITE, PLAIN_HELD, SEND_TIE, TLS_ARGS, TLS_PIDS,
    },
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

// sched:sched_process_exit (format): char comm[16] @8; pid_t pid @24; int prio @28;
// bool group_dead @32. Fires in the exiting thread for every thread (rare next to I/O).
// A thread that dies inside a blocking `SSL_read` never runs the uretprobe: its
// `TLS_ARGS` entry would make a later thread with the same id look "in an SSL call" (its
// sockets marked TLS and silenced). Every per-thread entry goes with the thread.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if TLS_ARGS.remove(&id).is_ok() {
        count(Counter::TlsArgsExited, 1);
    }
    let _ = ARGS.remove(&id);
    let _ = PENDING_WRITE.remove(&id);
    let _ = LAST_READ_FD.remove(&id);
    let _ = SEND_TIE.remove(&id);
    let _ = PLAIN_HELD.remove(&id);
    if field::<u8>(&ctx, 32) != 0 {
        // The last thread of the process: the process no longer uses a TLS library.
        let _ = TLS_PIDS.remove(&((id >> 32) as u32));
    }
    0
}

//! The whole pure pipeline (conn → http → rpc → mcp) from arbitrary sequences of kernel
//! events (opens, data with gaps and overlaps, closes, fd reuse, ticks; see
//! `mcpwarden_fuzz::program`), ending with `finish`; every record must serialise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpwarden::conn::ConnTable;
use mcpwarden::http::Limits;
use mcpwarden::mcp::{McpConfig, McpTracker};
use mcpwarden_fuzz::{program, Step};

fuzz_target!(|data: &[u8]| {
    let small = data.first().is_some_and(|b| b & 0x80 != 0);
    let cfg = if small {
        McpConfig {
            idle_timeout_ns: 200_000_000,
            max_pending_per_session: 2,
            max_sessions: 2,
            max_payload_bytes: 512,
            ..McpConfig::default()
        }
    } else {
        McpConfig::default()
    };
    let mut table = ConnTable::new(
        McpTracker::new(cfg),
        Limits::default(),
        if small { 2 } else { 64 },
    );
    let mut out = Vec::new();
    let mut now = 0;
    for step in program(data) {
        match step {
            Step::Event(ev) => {
                now = now.max(mcpwarden::replay::event_ts(&ev).unwrap_or(0));
                table.on_event(ev, &mut out);
            }
            Step::Tick(ts) => {
                now = ts;
                table.on_tick(ts, &mut out);
            }
        }
    }
    table.finish(now, &mut out);
    for r in &out {
        assert!(serde_json::to_string(r).is_ok());
    }
});

//! Kernel-side loss and activity counters.

use aya::maps::{MapData, PerCpuArray};
use mcpwarden_common::counters::Counter;

pub fn read(arr: &PerCpuArray<&MapData, u64>) -> Vec<(&'static str, u64)> {
    Counter::ALL
        .iter()
        .map(|c| {
            let sum = arr
                .get(&(*c as u32), 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0);
            (c.name(), sum)
        })
        .collect()
}

/// Per-hook counters as ("<hook>_<counter>", value), hooks that saw nothing left out.
pub fn read_hooks(arr: &PerCpuArray<&MapData, u64>) -> Vec<(String, u64)> {
    use mcpwarden_common::counters::{HookCounter, HOOK_COUNTERS_PER_SOURCE};
    use mcpwarden_common::event::DataSource;
    let mut out = Vec::new();
    for src in DataSource::ALL {
        for c in HookCounter::ALL {
            let slot = (src as u32) * HOOK_COUNTERS_PER_SOURCE + c as u32;
            let v = arr
                .get(&slot, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0);
            if v > 0 {
                out.push((format!("{}_{}", src.name(), c.name()), v));
            }
        }
    }
    out
}

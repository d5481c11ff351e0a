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

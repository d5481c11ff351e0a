//! The kernel ABI of mcpwarden: every type the eBPF programs and the agent exchange through
//! maps and the ring buffer. `#[repr(C)]`, no `bool`/`usize`, explicit padding, sizes asserted
//! at compile time. Nothing else in the project defines a kernel-visible layout.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod conn;
pub mod counters;
pub mod enforce;
pub mod event;
pub mod sniff;

/// `const` size/offset assertion usable in a `no_std` crate.
#[macro_export]
macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $n);
    };
}

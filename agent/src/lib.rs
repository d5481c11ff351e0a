//! mcpwarden agent library: capture (kernel) → conn → http → rpc → mcp → output.
//! Everything below `capture` is pure and testable without a kernel.

pub mod capture;
pub mod config;
pub mod conn;
pub mod control;
pub mod enforce;
pub mod export;
pub mod floor;
pub mod health;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod privileges;
pub mod process;
pub mod record_mask;
pub mod replay;
pub mod rpc;
pub mod top;

//! mcpwarden agent library: capture (kernel) → conn → http → rpc → mcp → output.
//! Everything below `capture` is pure and testable without a kernel.

pub mod capture;
pub mod config;
pub mod conn;
pub mod export;
pub mod http;
pub mod mcp;
pub mod output;
pub mod policy;
pub mod process;
pub mod replay;
pub mod rpc;

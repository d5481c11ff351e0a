//! Harness for mcpwarden's privileged end-to-end tests: start the real agent, real MCP SDK
//! peers, drive a conversation, stop the agent and read back the JSON lines it wrote.
//!
//! Every process a test starts is owned by a [`ChildGuard`], whose `Drop` kills it, so a
//! failing assertion never leaves an agent or a server behind. Failures panic with what was
//! expected, what came, and the process's stderr.
//!
//! Inputs come from the environment (`cargo xtask test` sets them all):
//! `MCPWARDEN_BIN` (the release agent), `MCPWARDEN_PYTHON` (the `.venv` interpreter with the
//! pinned `mcp` SDK), `MCPWARDEN_NODE_MODULES` (the pinned Node peers). Missing root or a
//! missing input is a test failure, never a silent skip.

pub mod agent;
pub mod collector;
pub mod container;
pub mod conversation;
pub mod enforce_driver;
pub mod env;
pub mod hostile;
pub mod kubernetes;
pub mod peers;
pub mod policy;
pub mod process;
pub mod records;
pub mod stateless;
pub mod tls;

pub use agent::Agent;
pub use collector::{CollectorProc, OtlpReceiver};
pub use env::{test_env, TestEnv};
pub use peers::{free_port, run_node_client, run_py_client, ClientOptions, PyServer, SdkClient};
pub use process::ChildGuard;
pub use tls::SelfSignedCert;

//! The policy stage: rules (YAML) and checks that judge every client→server MCP message.
//! Pure: no I/O except loading the policy file and reading/writing the pins file.
//!
//! * `facts.rs`: what the tracker hands in ([`RequestFacts`]) and gets back ([`Judgement`]);
//! * `format.rs`, `glob.rs`, `jsonpath.rs`: the file's shape, compiled while it is read;
//!   `load.rs`: [`load`]/[`parse`] into a [`Policy`], errors as `FILE:LINE:COLUMN: field`;
//!   `describe.rs`: what `mcpwarden policy check` prints;
//! * `judge.rs`: the [`Judge`] (checks, rule matching in `matching.rs`, precedence);
//!   `schema.rs`: `inputSchema` validation, `pins.rs`: pinned tool definitions,
//!   `limits.rs`: size limits;
//! * `source.rs`: [`PolicySource`], reload when the file changes or on SIGHUP.

mod describe;
mod facts;
mod format;
mod glob;
mod jsonpath;
mod judge;
mod limits;
mod load;
mod matching;
mod pins;
mod schema;
mod source;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_file;
#[cfg(test)]
mod tests_judge;

pub use facts::{Action, Judgement, ProcessFacts, Reason, ReasonKind, RequestFacts};
pub use format::UnknownCatalog;
pub use judge::{Judge, JudgeStats};
pub use load::{load, parse, Limits, PinMap, Policy, PolicyError};
pub use source::PolicySource;

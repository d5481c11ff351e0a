//! The policy stage: rules (YAML) and checks that judge every client→server MCP message.
//! Pure: no I/O except loading the policy file.

mod facts;

pub use facts::{Action, Judgement, ProcessFacts, Reason, ReasonKind, RequestFacts};

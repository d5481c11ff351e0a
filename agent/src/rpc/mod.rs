//! JSON-RPC 2.0 decoding: one HTTP body (or one SSE event's `data`) → messages.
//!
//! Pure and bounded: the body size and the nesting depth are checked before anything is
//! allocated for the parsed value, so a hostile peer cannot make the decoder recurse or
//! buffer without limit. Any method name is accepted; a batch (JSON array) is decoded element
//! by element, so one malformed element never loses its neighbours.

mod decode;
mod error;
mod id;
mod message;
mod salvage;

pub use decode::{decode, decode_with, DecodeLimits, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH};
pub use error::RpcError;
pub use id::RpcId;
pub use message::{RpcMessage, RpcPayload};
pub use salvage::{salvage, Salvaged};

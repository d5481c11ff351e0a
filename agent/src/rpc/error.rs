//! Why a body (or one element of a batch) is not a JSON-RPC 2.0 message.

/// A decoding failure, with the evidence needed to understand it from a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The body holds nothing but whitespace (an SSE priming event, a `202` with a body
    /// of spaces). Not an attack; callers usually skip it.
    #[error("empty JSON-RPC body ({len} bytes of whitespace)")]
    EmptyBody {
        /// Length of the body in bytes.
        len: usize,
    },

    /// The body is not valid JSON.
    #[error("body is not JSON: {detail} at line {line} column {column}")]
    NotJson {
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column of the first error.
        column: usize,
        /// serde_json's description of the error.
        detail: String,
    },

    /// The body is JSON but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {reason}")]
    NotJsonRpc {
        /// What is missing or wrong, naming the member.
        reason: String,
    },

    /// Arrays/objects nest deeper than the decoder accepts.
    #[error(
        "JSON nests deeper than {limit} levels (level {depth} opened at byte {offset}); \
         rejected to bound recursion"
    )]
    TooDeep {
        /// The deepest nesting accepted.
        limit: usize,
        /// The depth reached when decoding stopped.
        depth: usize,
        /// Byte offset of the bracket that went past the limit.
        offset: usize,
    },

    /// The body is larger than the decoder accepts.
    #[error("JSON-RPC body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Length of the body in bytes.
        size: usize,
        /// Configured limit in bytes.
        limit: usize,
    },

    /// A batch (`[]`) with no elements: JSON-RPC 2.0 answers it with "Invalid Request".
    #[error("empty JSON-RPC batch `[]`")]
    EmptyBatch,
}

//! The wire contract between the agent and a collector (gRPC, tonic/prost).
//!
//! Empty on purpose in the walking skeleton: the export issue adds the versioned `.proto`
//! package and its generated code here, so that agent and collector share one definition.

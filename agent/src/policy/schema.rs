//! `tools/call` arguments against the tool's `inputSchema` (the `jsonschema` crate).
//!
//! * The draft comes from `$schema` (draft-07 from the TypeScript SDK's zod-to-json-schema,
//!   2020-12 or none from pydantic in the Python SDK; none means 2020-12).
//! * Nothing is ever fetched: the retriever refuses every external `$ref` (and `$schema` the
//!   crate does not know), so such a schema does not compile.
//! * Compiled once per (server, tool, definition hash), in a bounded cache; a compile
//!   failure is cached too, and every eviction is counted.
//! * Error messages are masked (`value` instead of the argument's value): argument values
//!   may be secrets and the detail goes to verdict records.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

/// Schema errors listed in one finding's detail; the rest are counted.
pub const MAX_LISTED_ERRORS: usize = 8;

/// Refuses every retrieval: no network, no files.
struct NoRetrieval;

impl Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "external reference {} is not fetched (no network)",
            uri.as_str()
        )
        .into())
    }
}

/// Compiles a schema; the error text on failure.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    let built = catch_unwind(AssertUnwindSafe(|| {
        jsonschema::options()
            .with_retriever(NoRetrieval)
            .build(schema)
    }));
    match built {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(_) => Err("the schema compiler panicked".into()),
    }
}

/// The drafts the SDKs emit, by `$schema` (none means 2020-12).
const DRAFTS: [&str; 5] = [
    "https://json-schema.org/draft/2020-12/schema",
    "http://json-schema.org/draft-07/schema#",
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-04/schema#",
];

/// Builds the compiler's per-draft state (its meta-schemas) once, before the first call is
/// judged: the first compile of each draft costs 0.5-11 ms here, 20-40 µs after. Paid at
/// policy load, not by the first `tools/call` while its reset races the server's answer.
/// Once per process (the state is the crate's own, process-wide).
pub fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for draft in DRAFTS {
            let _ = compile(&serde_json::json!({"$schema": draft, "type": "object"}));
        }
    });
}

/// Validates `instance`; `None` when valid, else the detail (instance paths, masked
/// messages, at most [`MAX_LISTED_ERRORS`]).
pub fn violations(validator: &Validator, instance: &Value) -> Option<String> {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut listed = Vec::new();
        let mut total = 0usize;
        for e in validator.iter_errors(instance) {
            total += 1;
            if listed.len() < MAX_LISTED_ERRORS {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                listed.push(format!("{path}: {}", one_line(&e.masked().to_string())));
            }
        }
        (listed, total)
    }));
    let (listed, total) = match run {
        Ok(r) => r,
        Err(_) => return Some("the schema validator panicked".into()),
    };
    if total == 0 {
        return None;
    }
    let mut detail = listed.join("; ");
    if total > listed.len() {
        detail.push_str(&format!("; and {} more", total - listed.len()));
    }
    Some(detail)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub compiles: u64,
    pub compile_errors: u64,
    pub evictions: u64,
    pub hits: u64,
}

struct Entry {
    compiled: Result<Validator, String>,
    last_used: u64,
}

/// Compiled schemas by (server, tool, definition hash), least recently used evicted first.
pub struct SchemaCache {
    map: HashMap<(String, String, String), Entry>,
    max: usize,
    tick: u64,
    pub counts: CacheCounts,
}

impl SchemaCache {
    pub fn new(max: usize) -> Self {
        SchemaCache {
            map: HashMap::new(),
            max: max.max(1),
            tick: 0,
            counts: CacheCounts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The compiled schema for this definition, compiling it on first use.
    pub fn get(
        &mut self,
        server: &str,
        tool: &str,
        hash: &str,
        schema: &Value,
    ) -> &Result<Validator, String> {
        self.tick += 1;
        let key = (server.to_string(), tool.to_string(), hash.to_string());
        if self.map.contains_key(&key) {
            self.counts.hits += 1;
        } else {
            if self.map.len() >= self.max {
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                    self.counts.evictions += 1;
                }
            }
            let compiled = compile(schema);
            self.counts.compiles += 1;
            if compiled.is_err() {
                self.counts.compile_errors += 1;
            }
            self.map.insert(
                key.clone(),
                Entry {
                    compiled,
                    last_used: 0,
                },
            );
        }
        let tick = self.tick;
        let entry = self.map.entry(key).or_insert_with(|| Entry {
            compiled: Err("schema cache entry vanished".into()),
            last_used: 0,
        });
        entry.last_used = tick;
        &entry.compiled
    }
}

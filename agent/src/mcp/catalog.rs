//! What each server exposes: tools, resources, resource templates and prompts, from the list
//! results seen on the wire, and tool-definition drift between two complete lists.
//!
//! * Keyed by the server end `"ip:port/path"`, shared by every session and process that
//!   talks to it.
//! * A list request without `params.cursor` starts a new snapshot (in its session); pages
//!   requested with the previous page's `nextCursor` are appended; the answer without
//!   `nextCursor` completes the snapshot, which then replaces the server's list. A page that
//!   does not continue the snapshot in progress discards it (we cannot know what was missed).
//! * Drift: a tool present in two consecutive complete lists whose `title`, `description`,
//!   `inputSchema`, `outputSchema` or `annotations` differ (compared by SHA-256 of canonical
//!   JSON, so member order does not matter). The order of tools in a list never matters.
//! * Stateless era (2026-07-28): the `server/discover` result (supported versions,
//!   capabilities, instructions, cache hints) is kept per server too; list results of that era
//!   (with `resultType`, `ttlMs`, `cacheScope`) feed the same snapshots and drift detection.
//! * Bounded: entries per list and servers kept; what does not fit is counted.

use std::collections::{BTreeMap, HashMap};

use ring::digest;
use serde::Serialize;
use serde_json::Value;

/// The four list families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl ListKind {
    /// The list request method's family.
    pub fn from_method(method: &str) -> Option<ListKind> {
        Some(match method {
            "tools/list" => ListKind::Tools,
            "resources/list" => ListKind::Resources,
            "resources/templates/list" => ListKind::ResourceTemplates,
            "prompts/list" => ListKind::Prompts,
            _ => return None,
        })
    }

    /// The family a `notifications/*/list_changed` is about (resources covers templates).
    pub fn from_list_changed(method: &str) -> Option<ListKind> {
        Some(match method {
            "notifications/tools/list_changed" => ListKind::Tools,
            "notifications/resources/list_changed" => ListKind::Resources,
            "notifications/prompts/list_changed" => ListKind::Prompts,
            _ => return None,
        })
    }

    /// The name used in catalogue records.
    pub fn record_name(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resource_templates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The result member holding the entries.
    fn items_field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The entry member that identifies it.
    fn key_field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// Fields of a tool definition whose change is drift, with their wire names.
pub const DRIFT_FIELDS: [&str; 5] = [
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// One tool as the server listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    pub annotations: Option<Value>,
    /// SHA-256 (hex) of the canonical JSON of the definition's name and [`DRIFT_FIELDS`].
    pub hash: String,
    /// SHA-256 of each of [`DRIFT_FIELDS`] (absent = `null`), in that order.
    field_hashes: [[u8; 32]; 5],
}

impl ToolDef {
    /// A `Tool` object; `None` without a string `name`.
    pub fn from_value(v: &Value) -> Option<ToolDef> {
        let obj = v.as_object()?;
        let name = obj.get("name")?.as_str()?.to_string();
        // Each field's canonical JSON is written once: hashed alone, and as a member of the
        // definition's canonical object `{name, DRIFT_FIELDS present}` (members by key).
        let mut field_hashes = [[0u8; 32]; 5];
        let mut canon: [Option<Vec<u8>>; 5] = Default::default();
        let mut buf = Vec::new();
        for (i, field) in DRIFT_FIELDS.iter().enumerate() {
            let value = obj.get(*field).filter(|v| !v.is_null());
            buf.clear();
            write_canonical(value.unwrap_or(&Value::Null), &mut buf);
            field_hashes[i] = sha256(&buf);
            if value.is_some() {
                canon[i] = Some(buf.clone());
            }
        }
        let name_canon = {
            let mut n = Vec::new();
            push_json_str(&name, &mut n);
            n
        };
        let mut members: Vec<(&str, &[u8])> = vec![("name", &name_canon)];
        for (field, c) in DRIFT_FIELDS.iter().zip(canon.iter()) {
            if let Some(c) = c {
                members.push((field, c));
            }
        }
        members.sort_by(|a, b| a.0.cmp(b.0));
        let mut def = Vec::with_capacity(members.iter().map(|(_, c)| c.len() + 16).sum());
        def.push(b'{');
        for (i, (k, c)) in members.iter().enumerate() {
            if i > 0 {
                def.push(b',');
            }
            push_json_str(k, &mut def);
            def.push(b':');
            def.extend_from_slice(c);
        }
        def.push(b'}');
        let hash = hex(&sha256(&def));
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let json = |k: &str| obj.get(k).filter(|v| !v.is_null()).cloned();
        Some(ToolDef {
            name,
            title: text("title"),
            description: text("description"),
            input_schema: json("inputSchema"),
            output_schema: json("outputSchema"),
            annotations: json("annotations"),
            hash,
            field_hashes,
        })
    }

    /// Whether `v` is this very definition: the same name and the same value in every one
    /// of [`DRIFT_FIELDS`] (so [`ToolDef::from_value`] would give the same hashes). A
    /// `title` or `description` that is not a string is never taken as the same (this
    /// definition keeps only strings there).
    pub fn same_as(&self, v: &Value) -> bool {
        let Some(obj) = v.as_object() else {
            return false;
        };
        let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let text = |k: &str, mine: &Option<String>| match field(k) {
            None => mine.is_none(),
            Some(Value::String(s)) => mine.as_deref() == Some(s.as_str()),
            Some(_) => false,
        };
        obj.get("name").and_then(Value::as_str) == Some(self.name.as_str())
            && text("title", &self.title)
            && text("description", &self.description)
            && field("inputSchema") == self.input_schema.as_ref()
            && field("outputSchema") == self.output_schema.as_ref()
            && field("annotations") == self.annotations.as_ref()
    }

    /// The definition as a `Tool` object (name and [`DRIFT_FIELDS`]).
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), Value::String(self.name.clone()));
        let text = |v: &Option<String>| v.clone().map(Value::String);
        for (k, v) in [
            ("title", text(&self.title)),
            ("description", text(&self.description)),
            ("inputSchema", self.input_schema.clone()),
            ("outputSchema", self.output_schema.clone()),
            ("annotations", self.annotations.clone()),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        Value::Object(m)
    }

    /// The [`DRIFT_FIELDS`] that differ from `other`.
    pub fn changed_fields(&self, other: &ToolDef) -> Vec<String> {
        DRIFT_FIELDS
            .iter()
            .zip(self.field_hashes.iter().zip(other.field_hashes.iter()))
            .filter(|(_, (a, b))| a != b)
            .map(|(name, _)| (*name).to_string())
            .collect()
    }
}

/// Per-family counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListCounts {
    pub tools: u64,
    pub resources: u64,
    pub resource_templates: u64,
    pub prompts: u64,
}

impl ListCounts {
    fn bump(&mut self, kind: ListKind) {
        let slot = match kind {
            ListKind::Tools => &mut self.tools,
            ListKind::Resources => &mut self.resources,
            ListKind::ResourceTemplates => &mut self.resource_templates,
            ListKind::Prompts => &mut self.prompts,
        };
        *slot += 1;
    }
}

/// Everything one server was seen to expose. Lists hold the latest complete snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCatalog {
    /// `"ip:port/path"`.
    pub server: String,
    /// By name.
    pub tools: BTreeMap<String, ToolDef>,
    /// `Resource` objects by `uri`.
    pub resources: BTreeMap<String, Value>,
    /// `ResourceTemplate` objects by `uriTemplate`.
    pub resource_templates: BTreeMap<String, Value>,
    /// `Prompt` objects by `name`.
    pub prompts: BTreeMap<String, Value>,
    /// Complete lists seen, per family.
    pub snapshots: ListCounts,
    /// `notifications/*/list_changed` seen, per family.
    pub list_changed: ListCounts,
    /// Kernel time of the last `list_changed`.
    pub last_list_changed_ns: Option<u64>,
    /// Entries not kept: beyond the per-list bound, or without their identifying member.
    pub truncated: u64,
    /// Tool definitions that drifted.
    pub drifts: u64,
    /// Kernel time of the last complete list.
    pub updated_ns: u64,
    /// The latest `server/discover` result (stateless era).
    pub discover: Option<DiscoverInfo>,
}

/// What a `server/discover` result said.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverInfo {
    pub supported_versions: Vec<String>,
    pub capabilities: Option<Value>,
    pub instructions: Option<String>,
    pub ttl_ms: Option<u64>,
    pub cache_scope: Option<String>,
    /// Kernel time of the result.
    pub seen_ns: u64,
}

/// A tool whose definition changed between two complete lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDrift {
    pub tool: String,
    pub fields: Vec<String>,
    pub old_hash: String,
    pub new_hash: String,
}

/// A list being assembled from pages, in one session.
#[derive(Debug, Default)]
struct PageBuffer {
    items: Vec<Value>,
    /// The `nextCursor` the next page must be requested with.
    next_cursor: String,
    truncated: u64,
}

/// A complete list: its entries and how many did not fit.
#[derive(Debug, PartialEq)]
pub struct CompleteList {
    pub items: Vec<Value>,
    pub truncated: u64,
}

/// The lists a session is assembling, one per family. Boxed, and only while a list is in
/// progress: a session holds this inline (8 bytes, 48 with the map inline).
#[derive(Debug, Default)]
pub struct PageBuffers {
    // Boxed for the inline size of every session, not for the elements.
    #[allow(clippy::box_collection)]
    buffers: Option<Box<HashMap<ListKind, PageBuffer>>>,
}

impl PageBuffers {
    /// One list result answering a request with `cursor`. Returns the complete list when
    /// this page ends it.
    pub fn page(
        &mut self,
        kind: ListKind,
        cursor: Option<&str>,
        result: &Value,
        max_items: usize,
    ) -> Option<CompleteList> {
        let mut buf = match cursor {
            None => PageBuffer::default(),
            Some(c) => match self.take(kind) {
                Some(buf) if buf.next_cursor == c => buf,
                _ => return None, // joined mid-pagination, or a page out of sequence
            },
        };
        let items = result.get(kind.items_field()).and_then(Value::as_array);
        for item in items.into_iter().flatten() {
            if buf.items.len() < max_items && item.is_object() {
                buf.items.push(item.clone());
            } else {
                buf.truncated += 1;
            }
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) => {
                buf.next_cursor = next.to_string();
                self.buffers
                    .get_or_insert_with(Box::default)
                    .insert(kind, buf);
                None
            }
            None => {
                self.take(kind);
                Some(CompleteList {
                    items: buf.items,
                    truncated: buf.truncated,
                })
            }
        }
    }

    /// Removes `kind`'s list in progress; the map goes when it holds none.
    fn take(&mut self, kind: ListKind) -> Option<PageBuffer> {
        let map = self.buffers.as_deref_mut()?;
        let taken = map.remove(&kind);
        if map.is_empty() {
            self.buffers = None;
        }
        taken
    }
}

/// The catalogues of every server seen, bounded in count.
#[derive(Debug)]
pub struct Catalogs {
    map: HashMap<String, ToolCatalog>,
    max_servers: usize,
    /// Complete lists of servers beyond `max_servers`, not kept.
    pub dropped: u64,
}

impl Catalogs {
    pub fn new(max_servers: usize) -> Self {
        Catalogs {
            map: HashMap::new(),
            max_servers,
            dropped: 0,
        }
    }

    pub fn get(&self, server: &str) -> Option<&ToolCatalog> {
        self.map.get(server)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn entry(&mut self, server: &str) -> Option<&mut ToolCatalog> {
        if !self.map.contains_key(server) {
            if self.map.len() >= self.max_servers {
                self.dropped += 1;
                return None;
            }
            self.map.insert(
                server.to_string(),
                ToolCatalog {
                    server: server.to_string(),
                    ..ToolCatalog::default()
                },
            );
        }
        self.map.get_mut(server)
    }

    /// A `server/discover` result of `server`.
    pub fn note_discover(&mut self, server: &str, info: DiscoverInfo) {
        if let Some(cat) = self.entry(server) {
            cat.discover = Some(info);
        }
    }

    /// A `notifications/*/list_changed` for `server`.
    pub fn note_list_changed(&mut self, server: &str, kind: ListKind, ts_ns: u64) {
        if let Some(cat) = self.entry(server) {
            cat.list_changed.bump(kind);
            cat.last_list_changed_ns = Some(ts_ns);
        }
    }

    /// Replaces `server`'s `kind` list with `list`; returns the tools that drifted.
    pub fn commit(
        &mut self,
        server: &str,
        kind: ListKind,
        list: CompleteList,
        ts_ns: u64,
    ) -> Vec<ToolDrift> {
        let Some(cat) = self.entry(server) else {
            return Vec::new();
        };
        cat.snapshots.bump(kind);
        cat.updated_ns = ts_ns;
        cat.truncated += list.truncated;
        let mut drifts = Vec::new();
        if kind == ListKind::Tools {
            let mut tools = BTreeMap::new();
            for item in &list.items {
                // A tool listed again unchanged (every session lists them) keeps its
                // definition: no canonical JSON, no hashing.
                let known = item
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|name| cat.tools.get(name))
                    .filter(|old| old.same_as(item))
                    .cloned();
                match known.or_else(|| ToolDef::from_value(item)) {
                    Some(def) => {
                        tools.insert(def.name.clone(), def);
                    }
                    None => cat.truncated += 1,
                }
            }
            // Only tools in both lists can drift; added and removed ones are not drift.
            for (name, new) in &tools {
                let Some(old) = cat.tools.get(name) else {
                    continue;
                };
                let fields = old.changed_fields(new);
                if !fields.is_empty() {
                    drifts.push(ToolDrift {
                        tool: name.clone(),
                        fields,
                        old_hash: old.hash.clone(),
                        new_hash: new.hash.clone(),
                    });
                }
            }
            cat.drifts += drifts.len() as u64;
            cat.tools = tools;
        } else {
            let key = kind.key_field();
            let mut entries = BTreeMap::new();
            for item in list.items {
                match item.get(key).and_then(Value::as_str) {
                    Some(k) => {
                        entries.insert(k.to_string(), item);
                    }
                    None => cat.truncated += 1,
                }
            }
            match kind {
                ListKind::Resources => cat.resources = entries,
                ListKind::ResourceTemplates => cat.resource_templates = entries,
                ListKind::Prompts | ListKind::Tools => cat.prompts = entries,
            }
        }
        drifts
    }
}

/// JSON with object members sorted by key and no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    canonical_json_without(v, &[])
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            // Writing a scalar into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, v);
        }
        Value::String(s) => push_json_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_canonical_object(map, &[], out),
    }
}

/// The canonical JSON of `v`, where `v` is an object, without its top-level members named in
/// `skip` (what [`canonical_json`] gives for a copy without them, without the copy).
pub fn canonical_json_without(v: &Value, skip: &[&str]) -> String {
    let mut out = Vec::new();
    match v {
        Value::Object(map) => write_canonical_object(map, skip, &mut out),
        other => write_canonical(other, &mut out),
    }
    // Only serde_json's output and ASCII punctuation were written: always UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical_object(map: &serde_json::Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    let mut member = |k: &String, item: &Value, out: &mut Vec<u8>| {
        if skip.contains(&k.as_str()) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(k, out);
        out.push(b':');
        write_canonical(item, out);
    };
    if map.keys().is_sorted() {
        // serde_json's map iterates by key already (no `preserve_order`).
        for (k, item) in map {
            member(k, item, out);
        }
    } else {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            if let Some(item) = map.get(k) {
                member(k, item, out);
            }
        }
    }
    out.push(b'}');
}

fn push_json_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn sha256(s: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, s);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

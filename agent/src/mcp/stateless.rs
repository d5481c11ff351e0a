//! What the 2026-07-28 (stateless) revision adds, read off single messages: the era of a
//! request, error names, `server/discover` results, `input_required` results and their retries
//! (multi round-trip requests, MRTR), subscription tags; and the bounded table that ties an
//! MRTR retry to the call it continues.
//!
//! Every accessor tolerates any shape: a member of the wrong type reads as absent.

use std::collections::VecDeque;

use ring::digest;
use serde::Serialize;
use serde_json::Value;

use super::catalog::canonical_json_without;
use super::extract::{self, is_stateless_revision, META_PROTOCOL_VERSION};
use super::record::Era;
use super::Flow;
use crate::rpc::RpcId;

/// `_meta` key tagging a message of a `subscriptions/listen` stream with the listen request's id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// The `resultType` of a result that asks for client input before the call can complete.
pub const INPUT_REQUIRED: &str = "input_required";
/// The methods whose result may be `input_required` (and whose retries are correlated).
pub const MRTR_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];
/// Input-required rounds awaiting their retry, remembered per session.
pub const MAX_OPEN_ROUNDS: usize = 256;

/// The era a client→server message belongs to, from the message itself and its headers:
/// 1. `params._meta` names a protocol version (the key exists only from 2026-07-28) → stateless;
/// 2. `initialize` / `notifications/initialized` → handshake;
/// 3. `server/discover` / `subscriptions/listen` (methods of the stateless revision) → stateless;
/// 4. the request carries a session id → handshake;
/// 5. its `MCP-Protocol-Version` header names 2026-07-28 or later → stateless;
/// 6. otherwise handshake.
pub fn request_era(
    method: &str,
    params: Option<&Value>,
    protocol_version_header: Option<&str>,
    has_session_id: bool,
) -> Era {
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .is_some();
    if meta_version {
        return Era::Stateless;
    }
    match method {
        "initialize" | "notifications/initialized" => return Era::Handshake,
        "server/discover" | "subscriptions/listen" => return Era::Stateless,
        _ => {}
    }
    if has_session_id {
        return Era::Handshake;
    }
    if protocol_version_header.is_some_and(is_stateless_revision) {
        Era::Stateless
    } else {
        Era::Handshake
    }
}

/// The name of a JSON-RPC error code defined by JSON-RPC 2.0 or MCP.
pub fn error_name(code: i64) -> Option<&'static str> {
    Some(match code {
        -32700 => "parse_error",
        -32600 => "invalid_request",
        -32601 => "method_not_found",
        -32602 => "invalid_params",
        -32603 => "internal_error",
        -32002 => "resource_not_found",
        -32042 => "url_elicitation_required",
        -32020 => "header_mismatch",
        -32021 => "missing_required_client_capability",
        -32022 => "unsupported_protocol_version",
        _ => return None,
    })
}

/// Strings of a JSON array (non-strings skipped); `None` when not an array.
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    Some(
        v?.as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(extract::cap_message)
            .collect(),
    )
}

/// `supportedVersions` of a `server/discover` result.
pub fn discover_versions(result: &Value) -> Option<Vec<String>> {
    strings(result.get("supportedVersions"))
}

/// `data.supported` of an `UnsupportedProtocolVersion` (-32022) error.
pub fn error_supported_versions(code: i64, data: Option<&Value>) -> Option<Vec<String>> {
    (code == -32022)
        .then(|| strings(data?.get("supported")))
        .flatten()
}

/// `data.requiredCapabilities` of a `MissingRequiredClientCapability` (-32021) error.
pub fn error_required_capabilities(code: i64, data: Option<&Value>) -> Option<Value> {
    (code == -32021)
        .then(|| data?.get("requiredCapabilities").cloned())
        .flatten()
}

/// `resultType` of a result (absent means `"complete"`, reported as absent).
pub fn result_type(result: &Value) -> Option<String> {
    result
        .get("resultType")
        .and_then(Value::as_str)
        .map(extract::cap_message)
}

/// `ttlMs` of a cacheable result.
pub fn ttl_ms(result: &Value) -> Option<u64> {
    result.get("ttlMs").and_then(Value::as_u64)
}

/// `cacheScope` of a cacheable result.
pub fn cache_scope(result: &Value) -> Option<String> {
    result
        .get("cacheScope")
        .and_then(Value::as_str)
        .map(extract::cap_message)
}

/// One entry of an `input_required` result's `inputRequests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputRequestSummary {
    /// The server-assigned key the retry answers under.
    pub key: String,
    /// `elicitation/create`, `sampling/createMessage`, `roots/list` (`null` if absent).
    pub method: Option<String>,
}

/// The `inputRequests` of a result, sorted by key.
pub fn input_requests(result: &Value) -> Option<Vec<InputRequestSummary>> {
    let map = result.get("inputRequests")?.as_object()?;
    let mut out: Vec<InputRequestSummary> = map
        .iter()
        .map(|(k, v)| InputRequestSummary {
            key: extract::cap_message(k),
            method: v.get("method").and_then(Value::as_str).map(str::to_string),
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Some(out)
}

/// The keys of a retry's `params.inputResponses`, sorted.
pub fn input_response_keys(params: Option<&Value>) -> Option<Vec<String>> {
    let map = params?.get("inputResponses")?.as_object()?;
    let mut keys: Vec<String> = map.keys().map(|k| extract::cap_message(k)).collect();
    keys.sort();
    Some(keys)
}

/// SHA-256 of a `requestState` string (they can be long; only equality matters).
pub fn state_digest(state: Option<&Value>) -> Option<[u8; 32]> {
    state.and_then(Value::as_str).map(|s| sha256(s.as_bytes()))
}

/// SHA-256 of the canonical JSON of a request's params without `_meta`, `inputResponses` and
/// `requestState`: what stays the same from one round of a call to the next.
pub fn args_digest(params: Option<&Value>) -> [u8; 32] {
    let canonical = canonical_json_without(
        params.unwrap_or(&Value::Null),
        &["_meta", "inputResponses", "requestState"],
    );
    sha256(canonical.as_bytes())
}

/// `_meta["io.modelcontextprotocol/subscriptionId"]` of params or a result.
pub fn subscription_id(v: Option<&Value>) -> Option<RpcId> {
    v?.get("_meta")?
        .get(META_SUBSCRIPTION_ID)
        .and_then(RpcId::from_value)
}

/// `{progress, total?, message?}` of a progress notification's params.
pub fn progress_of(params: Option<&Value>) -> Option<Value> {
    let p = params?.as_object()?;
    let progress = p.get("progress").filter(|v| v.is_number())?;
    let mut out = serde_json::Map::new();
    out.insert("progress".into(), progress.clone());
    if let Some(total) = p.get("total").filter(|v| v.is_number()) {
        out.insert("total".into(), total.clone());
    }
    if let Some(message) = p.get("message").and_then(Value::as_str) {
        out.insert(
            "message".into(),
            Value::String(extract::cap_message(message)),
        );
    }
    Some(Value::Object(out))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Which logical call (multi round-trip) a request or answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRound {
    /// The JSON-RPC id of the call's first request.
    pub call_id: RpcId,
    /// 1 for the first request, 2 for its first retry, …
    pub round: u32,
}

/// An `input_required` answer awaiting its retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRound {
    /// Direction the call's requests travel.
    pub flow: Flow,
    pub method: String,
    pub name: Option<String>,
    pub args: [u8; 32],
    /// Digest of the answer's `requestState` (the retry must echo it).
    pub state: Option<[u8; 32]>,
    pub call: CallRound,
}

/// Input-required rounds of one session awaiting their retry, oldest first, bounded. Boxed,
/// and only while a round is open (8 bytes inline in a session, 32 with the queue inline).
#[derive(Debug, Default)]
pub struct RoundTable {
    // Boxed for the inline size of every session, not for the elements.
    #[allow(clippy::box_collection)]
    open: Option<Box<VecDeque<OpenRound>>>,
}

impl RoundTable {
    /// Remembers a round; returns how many old ones were dropped to stay bounded.
    pub fn push(&mut self, round: OpenRound) -> u64 {
        let open = self.open.get_or_insert_with(Box::default);
        let mut evicted = 0;
        while open.len() >= MAX_OPEN_ROUNDS {
            open.pop_front();
            evicted += 1;
        }
        open.push_back(round);
        evicted
    }

    /// The round a retry continues: same direction, method and name, and the echoed
    /// `requestState` when the retry carries one, else the same arguments and no state.
    /// The most recent match wins and is removed.
    pub fn take(
        &mut self,
        flow: Flow,
        method: &str,
        name: Option<&str>,
        state: Option<[u8; 32]>,
        args: [u8; 32],
    ) -> Option<OpenRound> {
        let open = self.open.as_deref_mut()?;
        let pos = open.iter().rposition(|r| {
            r.flow == flow
                && r.method == method
                && r.name.as_deref() == name
                && match state {
                    Some(s) => r.state == Some(s),
                    None => r.state.is_none() && r.args == args,
                }
        })?;
        let taken = open.remove(pos);
        if open.is_empty() {
            self.open = None;
        }
        taken
    }

    pub fn len(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.len())
    }

    /// Moves `other`'s rounds in after this table's.
    pub fn absorb(&mut self, other: RoundTable) -> u64 {
        let mut evicted = 0;
        for r in other.open.into_iter().flat_map(|o| *o) {
            evicted += self.push(r);
        }
        evicted
    }
}

/// How stateless-era traffic is grouped into one session: by the observed process, and
///   * the server endpoint `"ip:port/path"`,
///   * the client's IP address (the host it runs on: the same from both ends),
///   * the client's `clientInfo` name and version from `_meta`,
///   * the authenticated subject (the configured user header or JWT claim), if any.
///
/// The synthetic session id is `"stateless:"` followed by the first 16 hex digits of the SHA-256
/// of these fields (not of the process): the client's and the server's observations of the
/// same traffic carry the same id, and a later session of the same client (after an idle gap)
/// carries it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatelessKey {
    pub server: String,
    pub client_ip: String,
    pub client_name: String,
    pub client_version: String,
    pub subject: Option<String>,
    /// The synthetic session id (derived from the fields above).
    pub id: String,
}

impl StatelessKey {
    pub fn new(
        server: String,
        client_ip: String,
        client_name: String,
        client_version: String,
        subject: Option<String>,
    ) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [
            Some(server.as_str()),
            Some(client_ip.as_str()),
            Some(client_name.as_str()),
            Some(client_version.as_str()),
            subject.as_deref(),
        ] {
            match part {
                Some(p) => {
                    ctx.update(&[1]);
                    ctx.update(&(p.len() as u64).to_le_bytes());
                    ctx.update(p.as_bytes());
                }
                None => ctx.update(&[0]),
            }
        }
        let hex = super::catalog::hex(ctx.finish().as_ref());
        let id = format!("stateless:{}", hex.get(..16).unwrap_or(&hex));
        StatelessKey {
            server,
            client_ip,
            client_name,
            client_version,
            subject,
            id,
        }
    }
}

/// The IP address of an `"ip:port"` or `"[v6]:port"` endpoint (the input when it has no port).
pub fn ip_of(addr: &str) -> &str {
    let ip = match addr.rsplit_once(':') {
        Some((ip, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => addr,
    };
    ip.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_era_comes_from_meta_then_method_then_session_then_header() {
        let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
        assert_eq!(
            request_era("tools/list", Some(&meta), None, true),
            Era::Stateless
        );
        assert_eq!(
            request_era("initialize", None, Some("2026-07-28"), false),
            Era::Handshake,
            "a fallback initialize may carry a stale modern header"
        );
        assert_eq!(
            request_era("server/discover", None, None, false),
            Era::Stateless
        );
        assert_eq!(
            request_era("subscriptions/listen", None, None, true),
            Era::Stateless
        );
        assert_eq!(
            request_era("tools/list", None, Some("2026-07-28"), true),
            Era::Handshake
        );
        assert_eq!(
            request_era("tools/list", None, Some("2026-07-28"), false),
            Era::Stateless
        );
        assert_eq!(
            request_era("tools/list", None, Some("2025-11-25"), false),
            Era::Handshake
        );
        assert_eq!(request_era("tools/list", None, None, false), Era::Handshake);
    }

    #[test]
    fn mcp_error_codes_have_names() {
        assert_eq!(error_name(-32020), Some("header_mismatch"));
        assert_eq!(
            error_name(-32021),
            Some("missing_required_client_capability")
        );
        assert_eq!(error_name(-32022), Some("unsupported_protocol_version"));
        assert_eq!(error_name(-32601), Some("method_not_found"));
        assert_eq!(error_name(-32000), None);
    }

    #[test]
    fn error_data_is_read_per_code() {
        let data = json!({"supported": ["2026-07-28", 5], "requested": "2099-01-01",
                          "requiredCapabilities": {"elicitation": {}}});
        assert_eq!(
            error_supported_versions(-32022, Some(&data)),
            Some(vec!["2026-07-28".to_string()])
        );
        assert_eq!(error_supported_versions(-32602, Some(&data)), None);
        assert_eq!(error_supported_versions(-32022, None), None);
        assert_eq!(
            error_required_capabilities(-32021, Some(&data)),
            Some(json!({"elicitation": {}}))
        );
        assert_eq!(error_required_capabilities(-32022, Some(&data)), None);
    }

    #[test]
    fn discover_and_cacheable_results_are_read() {
        let r = json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
                       "capabilities": {}, "ttlMs": 60000, "cacheScope": "public"});
        assert_eq!(discover_versions(&r), Some(vec!["2026-07-28".to_string()]));
        assert_eq!(result_type(&r), Some("complete".into()));
        assert_eq!(ttl_ms(&r), Some(60000));
        assert_eq!(cache_scope(&r), Some("public".into()));
        let bad = json!({"supportedVersions": "2026-07-28", "ttlMs": -1, "cacheScope": 3});
        assert_eq!(
            (discover_versions(&bad), ttl_ms(&bad), cache_scope(&bad)),
            (None, None, None)
        );
    }

    #[test]
    fn input_requests_and_responses_are_listed_by_key() {
        let r = json!({"resultType": "input_required", "inputRequests": {
            "z": {"method": "roots/list"},
            "a": {"method": "elicitation/create", "params": {}},
            "m": {"params": {}}
        }, "requestState": "s1"});
        assert_eq!(
            input_requests(&r),
            Some(vec![
                InputRequestSummary {
                    key: "a".into(),
                    method: Some("elicitation/create".into())
                },
                InputRequestSummary {
                    key: "m".into(),
                    method: None
                },
                InputRequestSummary {
                    key: "z".into(),
                    method: Some("roots/list".into())
                },
            ])
        );
        let retry = json!({"inputResponses": {"z": {}, "a": {}}, "requestState": "s1"});
        assert_eq!(
            input_response_keys(Some(&retry)),
            Some(vec!["a".to_string(), "z".to_string()])
        );
        assert_eq!(input_response_keys(Some(&json!({}))), None);
    }

    #[test]
    fn the_args_digest_ignores_what_changes_between_rounds() {
        let first = json!({"name": "ask", "arguments": {"b": 1, "a": 2},
                           "_meta": {"progressToken": 1}});
        let retry = json!({"arguments": {"a": 2, "b": 1}, "name": "ask",
                           "inputResponses": {"k": {}}, "requestState": "x",
                           "_meta": {"progressToken": 2}});
        assert_eq!(args_digest(Some(&first)), args_digest(Some(&retry)));
        let other = json!({"name": "ask", "arguments": {"a": 3, "b": 1}});
        assert_ne!(args_digest(Some(&first)), args_digest(Some(&other)));
    }

    fn open(state: Option<&str>, id: i64, round: u32) -> OpenRound {
        OpenRound {
            flow: Flow::ClientToServer,
            method: "tools/call".into(),
            name: Some("ask".into()),
            args: args_digest(None),
            state: state_digest(state.map(|s| json!(s)).as_ref()),
            call: CallRound {
                call_id: RpcId::Num(id),
                round,
            },
        }
    }

    #[test]
    fn a_retry_finds_its_round_by_request_state_or_by_arguments() {
        let mut t = RoundTable::default();
        t.push(open(Some("s1"), 1, 1));
        t.push(open(None, 5, 2));
        let s1 = state_digest(Some(&json!("s1")));
        let found = t.take(
            Flow::ClientToServer,
            "tools/call",
            Some("ask"),
            s1,
            args_digest(None),
        );
        assert_eq!(found.map(|r| r.call.call_id), Some(RpcId::Num(1)));
        assert_eq!(
            t.take(
                Flow::ClientToServer,
                "tools/call",
                Some("ask"),
                s1,
                args_digest(None)
            ),
            None,
            "taken once"
        );
        assert_eq!(
            t.take(
                Flow::ClientToServer,
                "tools/call",
                Some("other"),
                None,
                args_digest(None)
            ),
            None,
            "another tool"
        );
        let by_args = t.take(
            Flow::ClientToServer,
            "tools/call",
            Some("ask"),
            None,
            args_digest(None),
        );
        assert_eq!(by_args.map(|r| r.call.round), Some(2));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_round_table_is_bounded() {
        let mut t = RoundTable::default();
        let mut evicted = 0;
        for i in 0..(MAX_OPEN_ROUNDS as i64 + 3) {
            evicted += t.push(open(None, i, 1));
        }
        assert_eq!((t.len(), evicted), (MAX_OPEN_ROUNDS, 3));
    }

    #[test]
    fn the_synthetic_id_depends_on_the_grouping_fields_only() {
        let a = StatelessKey::new(
            "127.0.0.1:8000/mcp".into(),
            "127.0.0.1".into(),
            "mcp".into(),
            "2.3.0".into(),
            None,
        );
        let b = StatelessKey::new(
            "127.0.0.1:8000/mcp".into(),
            "127.0.0.1".into(),
            "mcp".into(),
            "2.3.0".into(),
            None,
        );
        let c = StatelessKey::new(
            "127.0.0.1:8000/mcp".into(),
            "127.0.0.1".into(),
            "mcp".into(),
            "2.3.0".into(),
            Some("alice".into()),
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("stateless:") && a.id.len() == "stateless:".len() + 16);
    }

    #[test]
    fn ip_of_strips_the_port_and_brackets() {
        assert_eq!(ip_of("127.0.0.1:8000"), "127.0.0.1");
        assert_eq!(ip_of("[::1]:443"), "::1");
        assert_eq!(ip_of(""), "");
        assert_eq!(ip_of("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn progress_keeps_only_its_numbers_and_message() {
        assert_eq!(
            progress_of(Some(
                &json!({"progressToken": 1, "progress": 1, "total": 10, "message": "step 1"})
            )),
            Some(json!({"progress": 1, "total": 10, "message": "step 1"}))
        );
        assert_eq!(progress_of(Some(&json!({"progress": "1"}))), None);
    }

    #[test]
    fn subscription_ids_are_read_from_meta() {
        let p = json!({"_meta": {"io.modelcontextprotocol/subscriptionId": "listen-1"}});
        assert_eq!(
            subscription_id(Some(&p)),
            Some(RpcId::Str("listen-1".into()))
        );
        assert_eq!(subscription_id(Some(&json!({"_meta": 1}))), None);
    }
}

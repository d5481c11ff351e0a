//! Rule matching: every match dimension true and false, argument conditions, first match
//! wins, server defaults, the checks table and precedence.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::mcp::{Era, SessionState, Side, ToolCatalog, ToolDef};

/// An owned request from which [`RequestFacts`] are borrowed.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub server: String,
    pub host: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub process: ProcessFacts,
    pub user: Option<String>,
    pub role: Option<String>,
    pub verified: bool,
    pub era: Era,
    pub method: String,
    pub name: Option<String>,
    pub params: Option<Value>,
    pub body_bytes: usize,
    pub findings: Vec<Reason>,
    pub cut: bool,
}

impl Req {
    /// A `tools/call` of `tool` with `arguments`, from a typical client.
    pub fn call(tool: &str, arguments: Value) -> Req {
        Req {
            server: "127.0.0.1:9000/mcp".into(),
            host: Some("localhost:9000".into()),
            client_name: Some("claude-code".into()),
            client_version: Some("1.2.3".into()),
            process: ProcessFacts {
                pid: 4242,
                comm: "python3".into(),
                exe: Some("/usr/bin/python3.12".into()),
                uid: Some(1000),
                cgroup: Some("/user.slice/user-1000.slice/session-1.scope".into()),
                container_id: None,
            },
            user: Some("alice".into()),
            role: Some("dev, admin".into()),
            verified: true,
            era: Era::Handshake,
            method: "tools/call".into(),
            name: Some(tool.into()),
            params: Some(json!({"name": tool, "arguments": arguments})),
            body_bytes: 200,
            findings: Vec::new(),
            cut: false,
        }
    }

    /// Another method with `params`; `name` as the tracker extracts it.
    pub fn method(method: &str, name: Option<&str>, params: Value) -> Req {
        Req {
            method: method.into(),
            name: name.map(str::to_string),
            params: Some(params),
            ..Req::call("x", json!({}))
        }
    }

    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            server: &self.server,
            host: self.host.as_deref(),
            client_name: self.client_name.as_deref(),
            client_version: self.client_version.as_deref(),
            process: &self.process,
            side: Side::Client,
            user: self.user.as_deref(),
            role: self.role.as_deref(),
            identity_verified: self.verified,
            era: self.era,
            method: &self.method,
            name: self.name.as_deref(),
            params: self.params.as_ref(),
            is_request: true,
            session_state: SessionState::Operating,
            body_bytes: self.body_bytes,
            findings: self.findings.clone(),
            cut: self.cut,
        }
    }
}

/// A complete catalogue of `server` with `tools` (`Tool` objects).
pub(super) fn catalog(server: &str, tools: &[Value]) -> ToolCatalog {
    let mut cat = ToolCatalog {
        server: server.into(),
        ..ToolCatalog::default()
    };
    for t in tools {
        let def = ToolDef::from_value(t).unwrap();
        cat.tools.insert(def.name.clone(), def);
    }
    cat.snapshots.tools = 1;
    cat
}

/// Tools with permissive schemas.
pub(super) fn open_catalog() -> ToolCatalog {
    let any = json!({"type": "object"});
    catalog(
        "127.0.0.1:9000/mcp",
        &["fetch", "read_file", "explode", "add", "x", "write_db"]
            .map(|n| json!({"name": n, "inputSchema": any})),
    )
}

pub(super) fn policy(text: &str) -> Policy {
    match parse(text, Path::new("/test/policy.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// Judges `req` against `text` with the open catalogue.
pub(super) fn verdict(text: &str, req: &Req) -> Judgement {
    let mut judge = Judge::new(policy(text));
    judge.judge(&req.facts(), Some(&open_catalog()))
}

fn finding(kind: ReasonKind) -> Reason {
    Reason {
        kind,
        detail: "from the tracker".into(),
    }
}

#[test]
fn every_match_dimension_is_true_and_false() {
    type Mutate = fn(&mut Req);
    fn none(_: &mut Req) {}
    let base = || Req::call("fetch", json!({"url": "https://docs.internal/a", "n": 5}));
    let cases: &[(&str, Mutate, bool)] = &[
        ("{}", none, true),
        ("{ server: \"127.0.0.1:*\" }", none, true),
        ("{ server: \"127.0.0.1:9000/mcp\" }", none, true),
        ("{ server: \"127.0.0.1:9000/*\" }", none, true),
        ("{ server: \"127.0.0.1:9000/other\" }", none, false),
        ("{ server: \"10.0.0.5:*\" }", none, false),
        ("{ server: [\"10.*:*\", \"127.*:*\"] }", none, true),
        ("{ host: localhost }", none, true),
        ("{ host: LOCALHOST }", none, true),
        ("{ host: \"localhost:9000\" }", none, true),
        ("{ host: \"localhost:9001\" }", none, false),
        ("{ host: \"*.internal\" }", none, false),
        (
            "{ host: \"*.internal\" }",
            |r| r.host = Some("mcp.internal:443".into()),
            true,
        ),
        ("{ host: localhost }", |r| r.host = None, false),
        ("{ client: { name: \"claude-*\" } }", none, true),
        ("{ client: { name: cursor } }", none, false),
        ("{ client: { version: \"1.*\" } }", none, true),
        ("{ client: { version: \"2.*\" } }", none, false),
        (
            "{ client: { name: \"*\" } }",
            |r| r.client_name = None,
            false,
        ),
        ("{ process: { comm: python3 } }", none, true),
        ("{ process: { comm: node } }", none, false),
        ("{ process: { exe: \"/usr/bin/*\" } }", none, true),
        ("{ process: { exe: \"/opt/**\" } }", none, false),
        (
            "{ process: { exe: \"**\" } }",
            |r| r.process.exe = None,
            false,
        ),
        ("{ process: { uid: 1000 } }", none, true),
        ("{ process: { uid: [0, 1000] } }", none, true),
        ("{ process: { uid: 0 } }", none, false),
        (
            "{ process: { uid: 1000 } }",
            |r| r.process.uid = None,
            false,
        ),
        ("{ process: { cgroup: \"/user.slice/**\" } }", none, true),
        ("{ process: { cgroup: \"/system.slice/**\" } }", none, false),
        ("{ process: { container_id: \"*\" } }", none, false),
        (
            "{ process: { container_id: \"abc*\" } }",
            |r| r.process.container_id = Some("abc123".into()),
            true,
        ),
        ("{ identity: { user: alice } }", none, true),
        ("{ identity: { user: bob } }", none, false),
        ("{ identity: { user: \"*\" } }", |r| r.user = None, false),
        ("{ identity: { role: admin } }", none, true),
        ("{ identity: { role: dev } }", none, true),
        ("{ identity: { role: root } }", none, false),
        ("{ identity: { role: \"*\" } }", |r| r.role = None, false),
        ("{ identity: { verified: true } }", none, true),
        ("{ identity: { verified: false } }", none, false),
        (
            "{ identity: { verified: false } }",
            |r| r.verified = false,
            true,
        ),
        ("{ era: handshake }", none, true),
        ("{ era: stateless }", none, false),
        ("{ era: stateless }", |r| r.era = Era::Stateless, true),
        ("{ method: \"tools/*\" }", none, true),
        ("{ method: [\"resources/*\", \"prompts/*\"] }", none, false),
        ("{ tool: fetch }", none, true),
        ("{ tool: \"f*\" }", none, true),
        ("{ tool: explode }", none, false),
        (
            "{ tool: fetch }",
            |r| r.method = "prompts/get".into(),
            false,
        ),
        ("{ tool: fetch }", |r| r.name = None, true), // falls back to params.name
        ("{ resource: \"file:///srv/**\" }", none, false),
        (
            "{ resource: \"file:///srv/**\" }",
            |r| {
                *r = Req::method(
                    "resources/read",
                    Some("file:///srv/a/b"),
                    json!({"uri": "file:///srv/a/b"}),
                )
            },
            true,
        ),
        (
            "{ resource: \"file:///srv/**\" }",
            |r| *r = Req::method("resources/subscribe", None, json!({"uri": "file:///srv/x"})),
            true,
        ),
        (
            "{ resource: \"file:///srv/**\" }",
            |r| {
                *r = Req::method(
                    "resources/read",
                    Some("file:///etc/passwd"),
                    json!({"uri": "file:///etc/passwd"}),
                )
            },
            false,
        ),
        (
            "{ prompt: greet }",
            |r| *r = Req::method("prompts/get", Some("greet"), json!({"name": "greet"})),
            true,
        ),
        (
            "{ prompt: greet }",
            |r| *r = Req::method("prompts/get", Some("other"), json!({"name": "other"})),
            false,
        ),
        ("{ prompt: fetch }", none, false),
        (
            "{ args: { url: { prefix: \"https://docs.internal/\" } } }",
            none,
            true,
        ),
        (
            "{ args: { url: { prefix: \"https://evil/\" } } }",
            none,
            false,
        ),
        (
            "{ args: { url: { present: true } } }",
            |r| {
                *r = Req::method(
                    "prompts/get",
                    Some("p"),
                    json!({"name": "p", "arguments": {"url": 1}}),
                )
            },
            false,
        ),
        ("{ check: header_mismatch }", none, false),
        (
            "{ check: [schema_violation, header_mismatch] }",
            |r| r.findings.push(finding(ReasonKind::HeaderMismatch)),
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (m, mutate, want) in cases {
        let text = format!("default: allow\nchecks: {{ header_mismatch: allow }}\nrules:\n  - id: r\n    action: deny\n    match: {m}\n");
        let mut req = base();
        mutate(&mut req);
        let j = verdict(&text, &req);
        let got = j.rule_id.as_deref() == Some("r");
        if got != *want {
            failures.push(format!("match {m}: want {want}, got {j:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn argument_conditions_table() {
    let cases: &[(&str, Value, bool)] = &[
        ("{ equals: read }", json!({"v": "read"}), true),
        ("{ equals: read }", json!({"v": "write"}), false),
        ("{ equals: 1 }", json!({"v": 1.0}), true),
        ("{ equals: 1 }", json!({"v": "1"}), false),
        ("{ equals: null }", json!({"v": null}), true),
        ("{ equals: null }", json!({}), false),
        (
            "{ equals: { a: [1, 2] } }",
            json!({"v": {"a": [1, 2]}}),
            true,
        ),
        (
            "{ equals: { a: [1, 2] } }",
            json!({"v": {"a": [1, 2], "b": 0}}),
            false,
        ),
        ("{ one_of: [1, 2] }", json!({"v": 2}), true),
        ("{ one_of: [1, 2] }", json!({"v": 3}), false),
        ("{ one_of: [a, 2] }", json!({"v": "a"}), true),
        (
            "{ prefix: \"https://docs.internal/\" }",
            json!({"v": "https://docs.internal/x"}),
            true,
        ),
        (
            "{ prefix: \"https://docs.internal/\" }",
            json!({"v": "https://docs.internal.evil/"}),
            false,
        ),
        ("{ prefix: \"1\" }", json!({"v": 12}), false),
        (
            "{ glob: \"/srv/data/**\" }",
            json!({"v": "/srv/data/a/b"}),
            true,
        ),
        (
            "{ glob: \"/srv/data/**\" }",
            json!({"v": "/etc/passwd"}),
            false,
        ),
        ("{ glob: \"*\" }", json!({"v": ["x"]}), false),
        ("{ regex: \"^[a-z]+$\" }", json!({"v": "abc"}), true),
        ("{ regex: \"^[a-z]+$\" }", json!({"v": "ab1"}), false),
        ("{ regex: \".*\" }", json!({"v": 5}), false),
        ("{ range: { min: 0, max: 10 } }", json!({"v": 10}), true),
        ("{ range: { min: 0, max: 10 } }", json!({"v": 10.5}), false),
        ("{ range: { min: 0 } }", json!({"v": -1}), false),
        ("{ range: { max: 0 } }", json!({"v": -1e9}), true),
        ("{ range: { min: 0 } }", json!({"v": "5"}), false),
        ("{ present: true }", json!({"v": null}), true),
        ("{ present: true }", json!({}), false),
        ("{ present: false }", json!({}), true),
        ("{ absent: true }", json!({}), true),
        ("{ absent: true }", json!({"v": 0}), false),
        ("{ absent: false }", json!({"v": 0}), true),
        ("{ not: { prefix: a } }", json!({"v": "b"}), true),
        ("{ not: { prefix: a } }", json!({"v": "a"}), false),
        ("{ not: { prefix: a } }", json!({}), true),
        ("{ not: { prefix: a } }", json!({"v": 1}), true),
        ("{ not: { not: { equals: 1 } } }", json!({"v": 1}), true),
        ("{ equals: 1 }", json!({}), false),
        ("{ regex: x }", json!({}), false),
    ];
    let mut failures = Vec::new();
    for (cond, args, want) in cases {
        let text = format!(
            "rules:\n  - id: r\n    action: deny\n    match:\n      args:\n        v: {cond}\n"
        );
        let j = verdict(&text, &Req::call("fetch", args.clone()));
        let got = j.rule_id.as_deref() == Some("r");
        if got != *want {
            failures.push(format!("{cond} on {args}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn nested_and_quoted_argument_paths_reach_their_values() {
    let text = "rules:\n  - id: r\n    action: deny\n    match:\n      args:\n        $.opts.mode: { equals: write }\n        \"$['file names'][1]\": { glob: \"*.key\" }\n";
    let hit = Req::call(
        "x",
        json!({"opts": {"mode": "write"}, "file names": ["a", "id.key"]}),
    );
    assert_eq!(verdict(text, &hit).action, Action::Deny);
    let miss = Req::call(
        "x",
        json!({"opts": {"mode": "write"}, "file names": ["id.key"]}),
    );
    assert_eq!(verdict(text, &miss).action, Action::Allow);
}

/// The issue's examples: `fetch` only for `url` under https://docs.internal/, `read_file`
/// only for `path` under /srv/data/.
#[test]
fn fetch_and_read_file_are_allowed_only_for_the_given_arguments() {
    let text = r#"
default: allow
rules:
  - id: fetch-docs-only
    action: allow
    match: { tool: fetch, args: { url: { prefix: "https://docs.internal/" } } }
  - id: fetch-elsewhere
    action: deny
    match: { tool: fetch }
  - id: read-no-dotdot
    action: deny
    match: { tool: read_file, args: { path: { regex: '(^|/)\.\.(/|$)' } } }
  - id: read-data-only
    action: deny
    match: { tool: read_file, args: { path: { not: { glob: "/srv/data/**" } } } }
"#;
    let cases: &[(&str, Value, Action, Option<&str>)] = &[
        (
            "fetch",
            json!({"url": "https://docs.internal/guide"}),
            Action::Allow,
            Some("fetch-docs-only"),
        ),
        (
            "fetch",
            json!({"url": "https://evil.example/"}),
            Action::Deny,
            Some("fetch-elsewhere"),
        ),
        (
            "fetch",
            json!({"url": "https://docs.internal.evil.example/"}),
            Action::Deny,
            Some("fetch-elsewhere"),
        ),
        ("fetch", json!({}), Action::Deny, Some("fetch-elsewhere")),
        (
            "fetch",
            json!({"url": 7}),
            Action::Deny,
            Some("fetch-elsewhere"),
        ),
        (
            "read_file",
            json!({"path": "/srv/data/report.csv"}),
            Action::Allow,
            None,
        ),
        (
            "read_file",
            json!({"path": "/srv/data/a/b/c.txt"}),
            Action::Allow,
            None,
        ),
        (
            "read_file",
            json!({"path": "/etc/shadow"}),
            Action::Deny,
            Some("read-data-only"),
        ),
        (
            "read_file",
            json!({"path": "/srv/data/../../etc/shadow"}),
            Action::Deny,
            Some("read-no-dotdot"),
        ),
        ("read_file", json!({}), Action::Deny, Some("read-data-only")),
        ("add", json!({"a": 1}), Action::Allow, None),
    ];
    for (tool, args, action, rule) in cases {
        let j = verdict(text, &Req::call(tool, args.clone()));
        assert_eq!(
            (j.action, j.rule_id.as_deref()),
            (*action, *rule),
            "{tool} {args}"
        );
        assert!(j.reasons.is_empty(), "{:?}", j.reasons);
    }
}

#[test]
fn the_minimal_policy_denies_explode_and_allows_add() {
    let text = "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";
    let j = verdict(text, &Req::call("explode", json!({})));
    assert_eq!(j.action, Action::Deny);
    assert_eq!(j.rule_id.as_deref(), Some("no-explode"));
    let j = verdict(text, &Req::call("add", json!({"a": 1, "b": 2})));
    assert!(j.is_plain_allow(), "{j:?}");
}

#[test]
fn the_first_matching_rule_wins() {
    let text = "rules:\n  - id: first\n    action: audit\n    match: { tool: \"*\" }\n  - id: second\n    action: deny\n    match: { tool: explode }\n";
    let j = verdict(text, &Req::call("explode", json!({})));
    assert_eq!(
        (j.action, j.rule_id.as_deref()),
        (Action::Audit, Some("first"))
    );
}

#[test]
fn a_server_default_applies_when_no_rule_matches() {
    let text = r#"
default: allow
servers:
  - match: { server: "10.0.0.5:*" }
    default: audit
  - match: { server: "127.0.0.1:*/mcp", host: localhost }
    default: deny
  - match: { server: "127.0.0.1:*" }
    default: approve
rules:
  - id: add-ok
    action: allow
    match: { tool: add }
"#;
    let j = verdict(text, &Req::call("fetch", json!({})));
    assert_eq!((j.action, j.rule_id), (Action::Deny, None));
    let j = verdict(text, &Req::call("add", json!({})));
    assert_eq!(
        (j.action, j.rule_id.as_deref()),
        (Action::Allow, Some("add-ok"))
    );
    let mut other_host = Req::call("fetch", json!({}));
    other_host.host = Some("mcp.example".into());
    assert_eq!(verdict(text, &other_host).action, Action::Approve);
    let mut other_server = Req::call("fetch", json!({}));
    other_server.server = "192.168.1.1:80/mcp".into();
    assert_eq!(verdict(text, &other_server).action, Action::Allow);
}

#[test]
fn the_checks_table_decides_when_no_rule_matches_and_is_stricter_than_the_default() {
    let with = |kind| {
        let mut r = Req::call("add", json!({}));
        r.findings.push(finding(kind));
        r
    };
    let cases: &[(&str, ReasonKind, Action)] = &[
        (
            "default: allow\n",
            ReasonKind::HeaderMismatch,
            Action::Audit,
        ),
        (
            "default: allow\nchecks: { header_mismatch: deny }\n",
            ReasonKind::HeaderMismatch,
            Action::Deny,
        ),
        (
            "default: allow\nchecks: { header_mismatch: approve }\n",
            ReasonKind::HeaderMismatch,
            Action::Approve,
        ),
        (
            "default: allow\nchecks: { header_mismatch: allow }\n",
            ReasonKind::HeaderMismatch,
            Action::Allow,
        ),
        (
            "default: deny\nchecks: { header_mismatch: audit }\n",
            ReasonKind::HeaderMismatch,
            Action::Deny,
        ),
        (
            "default: allow\n",
            ReasonKind::MissingSessionId,
            Action::Audit,
        ),
        (
            "default: allow\nchecks: { before_initialize: deny }\n",
            ReasonKind::MissingSessionId,
            Action::Audit,
        ),
    ];
    for (text, kind, want) in cases {
        let j = verdict(text, &with(*kind));
        assert_eq!(j.action, *want, "{text} with {kind:?}");
        assert_eq!(j.rule_id, None);
        assert_eq!(
            j.reasons,
            vec![finding(*kind)],
            "findings are passed through"
        );
    }
}

#[test]
fn an_allow_rule_does_not_waive_a_stricter_check_but_a_rule_naming_the_check_does() {
    let mut req = Req::call("add", json!({}));
    req.findings.push(finding(ReasonKind::HeaderMismatch));
    let text = "checks: { header_mismatch: deny }\nrules:\n  - id: add-ok\n    action: allow\n    match: { tool: add }\n";
    let j = verdict(text, &req);
    assert_eq!((j.action, j.rule_id), (Action::Deny, None));

    let text = "checks: { header_mismatch: deny }\nrules:\n  - id: tolerate\n    action: audit\n    match: { tool: add, check: header_mismatch }\n";
    let j = verdict(text, &req);
    assert_eq!(
        (j.action, j.rule_id.as_deref()),
        (Action::Audit, Some("tolerate"))
    );

    // A deny rule stays a deny whatever the checks say.
    let text = "checks: { header_mismatch: audit }\nrules:\n  - id: no\n    action: deny\n    match: { tool: add }\n";
    let j = verdict(text, &req);
    assert_eq!((j.action, j.rule_id.as_deref()), (Action::Deny, Some("no")));
}

#[test]
fn rule_options_reach_the_judgement() {
    let text = r#"
approve_timeout_secs: 90
rules:
  - id: hold-closed
    action: deny
    fail: closed
    block_connect: true
    match: { tool: explode }
  - id: ask
    action: approve
    approve_timeout_secs: 30
    match: { tool: write_db }
  - id: ask-default
    action: approve
    match: { tool: add }
"#;
    let j = verdict(text, &Req::call("explode", json!({})));
    assert!(j.fail_closed && j.block_connect);
    assert_eq!(j.approve_timeout_ms, 90_000);
    let j = verdict(text, &Req::call("write_db", json!({})));
    assert_eq!(
        (j.action, j.approve_timeout_ms, j.block_connect),
        (Action::Approve, 30_000, false)
    );
    assert!(j.fail_closed, "approval holds fail closed");
    let j = verdict(text, &Req::call("add", json!({})));
    assert_eq!(j.approve_timeout_ms, 90_000);
    let j = verdict(text, &Req::call("fetch", json!({})));
    assert!(!j.fail_closed && !j.block_connect);
    assert!(j.is_plain_allow());
}

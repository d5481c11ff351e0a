//! The policy file: what parses, what is refused (with file, line, column and field), what
//! `policy check` prints, permissions, the pins file and reload.

use std::path::{Path, PathBuf};

use super::*;

const FILE: &str = "/etc/mcpwarden/policy.yaml";

fn err(text: &str) -> String {
    match parse(text, Path::new(FILE)) {
        Ok(_) => panic!("want an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A fresh directory per test.
pub(super) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcpwarden-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(super) fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

const README: &str = include_str!("../../../README.md");

/// The YAML block after `heading` in the README (users copy these: they must parse).
pub(super) fn readme_yaml(heading: &str) -> String {
    let from = README
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &README[from..];
    let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("a closed block");
    rest[start..start + len].to_string()
}

#[test]
fn the_minimal_policy_of_the_issue_parses_as_written() {
    let text = "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";
    assert_eq!(
        readme_yaml("### Minimal example"),
        text,
        "the README shows it as written"
    );
    let p = parse(text, Path::new(FILE)).unwrap();
    assert_eq!(p.default, Action::Allow);
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].id, "no-explode");
    assert_eq!(p.rules[0].action, Action::Deny);
    assert!(p
        .describe()
        .contains("1. no-explode: deny when tools/call of tool \"explode\""));
}

#[test]
fn an_empty_file_allows_everything_with_default_checks() {
    let p = parse("", Path::new(FILE)).unwrap();
    assert_eq!(p.default, Action::Allow);
    assert!(p.rules.is_empty());
    assert_eq!(p.hold_timeout_ms(), 50);
    assert_eq!(p.approve_timeout_ms(), 120_000);
    assert!(!p.record_allows());
    assert_eq!(
        p.check_action(ReasonKind::ToolDefinitionDrift),
        Action::Deny
    );
    assert_eq!(p.check_action(ReasonKind::SchemaViolation), Action::Audit);
    assert_eq!(p.limits(), Limits::default());
}

#[test]
fn the_readme_complete_example_parses_and_is_described() {
    let dir = temp_dir("readme");
    let file = dir.join("policy.yaml");
    let p = match parse(&readme_yaml("### Complete example"), &file) {
        Ok(p) => p,
        Err(e) => panic!("the README's complete example: {e}"),
    };
    assert_eq!(p.rules.len(), 7);
    assert_eq!(p.pins_file(), Some(dir.join("pins.yaml").as_path()));
    assert_eq!(p.servers.len(), 1);
    assert_eq!(p.check_action(ReasonKind::SchemaViolation), Action::Deny);
    assert_eq!(p.check_action(ReasonKind::UnknownTool), Action::Deny);
    assert_eq!(p.check_action(ReasonKind::HeaderMismatch), Action::Audit);
    let d = p.describe();
    for want in [
        "policy /tmp/",
        "default: allow",
        "  schema_violation: deny\n",
        "  header_mismatch: audit (default)",
        "  tool_definition_drift: deny (default)",
        "  1. server \"10.0.0.5:*/mcp\" and host \"mcp.internal\": default deny",
        "  1. no-explode: deny (fail closed) when tools/call of tool \"explode\"",
        "  2. fetch-docs-only: allow when tools/call of tool \"fetch\" and argument url starts with \"https://docs.internal/\"",
        "  4. read-no-dotdot: deny when tools/call of tool \"read_file\" and argument path matches regex \"(^|/)\\\\.\\\\.(/|$)\"",
        "  5. read-data-only: deny when tools/call of tool \"read_file\" and argument path not (matches glob \"/srv/data/**\")",
        "approve (approve timeout 30 s) when server \"127.0.0.1:*\" | \"10.0.0.*:8443/mcp\" and host \"*.internal\"",
        "uid 0 | 1000",
        "argument level is one of 1, 2 and argument q matches regex \"^[a-z]+$\" and argument n is a number in [0, 10] and argument token is present and argument $['x y'][0] is absent",
        "  7. audit-bad-headers: audit when a finding header_mismatch | missing_session_id",
    ] {
        assert!(d.contains(want), "missing {want:?} in:\n{d}");
    }
}

/// Tetragon-style: each broken file and the exact `file:line:column: field` prefix of its
/// error, and a word of the message.
#[test]
fn broken_policy_files_name_file_line_column_and_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "an unknown top-level key",
            "default: allow\nrulez: []\n",
            "/etc/mcpwarden/policy.yaml:2:1: field `rulez`: ",
            "unknown field `rulez`",
        ),
        (
            "a bad action",
            "default: allow\nrules:\n  - id: a\n    action: block\n",
            "/etc/mcpwarden/policy.yaml:4:13: field `rules[0].action`: ",
            "unknown variant `block`",
        ),
        (
            "a bad global default",
            "default: maybe\n",
            "/etc/mcpwarden/policy.yaml:1:10: field `default`: ",
            "unknown variant `maybe`",
        ),
        (
            "an unknown match key",
            "rules:\n  - id: a\n    action: deny\n    match: { tool: x, toll: y }\n",
            "/etc/mcpwarden/policy.yaml:4:23: field `rules[0].match.toll`: ",
            "unknown field `toll`",
        ),
        (
            "a bad regex",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        q: { regex: \"[a-\" }\n",
            "/etc/mcpwarden/policy.yaml:6:21: field `rules[0].match.args.q.regex`: ",
            "bad regex `[a-`",
        ),
        (
            "a bad glob",
            "rules:\n  - id: a\n    action: deny\n    match: { tool: \"ex[plode\" }\n",
            "/etc/mcpwarden/policy.yaml:4:20: field `rules[0].match.tool`: ",
            "bad glob `ex[plode`: `[` at character 3 is never closed",
        ),
        (
            "a bad glob in a list",
            "rules:\n  - id: a\n    action: deny\n    match:\n      server: [\"a:*\", \"b[\"]\n",
            "/etc/mcpwarden/policy.yaml:5:23: field `rules[0].match.server[1]`: ",
            "bad glob `b[`",
        ),
        (
            "a bad JSON path",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        \"a..b\": { present: true }\n",
            "/etc/mcpwarden/policy.yaml:6:9: field `rules[0].match.args.a..b`: ",
            "bad JSON path `a..b` at character 3: empty member name",
        ),
        (
            "min greater than max",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        n: { range: { min: 10, max: 1 } }\n",
            "/etc/mcpwarden/policy.yaml:6:21: field `rules[0].match.args.n.range`: ",
            "range min 10 is greater than max 1",
        ),
        (
            "a range without bounds",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        n:\n          range: {}\n",
            "/etc/mcpwarden/policy.yaml:7:18: field `rules[0].match.args.n.range`: ",
            "a range needs `min`, `max` or both",
        ),
        (
            "two operators in one condition",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        u: { prefix: a, glob: b }\n",
            "/etc/mcpwarden/policy.yaml:6:12: field `rules[0].match.args.u`: ",
            "exactly one of",
        ),
        (
            "an unknown condition operator",
            "rules:\n  - id: a\n    action: deny\n    match:\n      args:\n        u: { startswith: a }\n",
            "/etc/mcpwarden/policy.yaml:6:14: field `rules[0].match.args.u.startswith`: ",
            "unknown field `startswith`",
        ),
        (
            "a duplicate rule id",
            "rules:\n  - id: a\n    action: deny\n  - id: b\n    action: deny\n  - id: a\n    action: allow\n",
            "/etc/mcpwarden/policy.yaml:6:9: field `rules[2].id`: ",
            "duplicate rule id `a`",
        ),
        (
            "a rule without an id",
            "rules:\n  - action: deny\n    match: { tool: x }\n",
            "/etc/mcpwarden/policy.yaml:2:5: field `rules[0]`: ",
            "missing field `id`",
        ),
        (
            "approve_timeout_secs on a deny rule",
            "rules:\n  - id: a\n    action: deny\n    approve_timeout_secs: 5\n",
            "/etc/mcpwarden/policy.yaml:2:5: field `rules[0]`: ",
            "approve_timeout_secs applies only to action approve",
        ),
        (
            "block_connect on an allow rule",
            "rules:\n  - id: a\n    action: allow\n    block_connect: true\n",
            "/etc/mcpwarden/policy.yaml:2:5: field `rules[0]`: ",
            "block_connect needs action deny",
        ),
        (
            "tool and prompt together",
            "rules:\n  - id: a\n    action: deny\n    match:\n      tool: x\n      prompt: y\n",
            "/etc/mcpwarden/policy.yaml:5:7: field `rules[0].match`: ",
            "at most one of `tool`, `resource`, `prompt`",
        ),
        (
            "a bad check name",
            "rules:\n  - id: a\n    action: deny\n    match: { check: [schema_violation, bogus] }\n",
            "/etc/mcpwarden/policy.yaml:4:40: field `rules[0].match.check[1]`: ",
            "unknown variant `bogus`",
        ),
        (
            "a bad key in the checks table",
            "checks:\n  schema_violations: deny\n",
            "/etc/mcpwarden/policy.yaml:2:3: field `checks.?`: ",
            "unknown variant `schema_violations`",
        ),
        (
            "a negative uid",
            "rules:\n  - id: a\n    action: deny\n    match: { process: { uid: -1 } }\n",
            "/etc/mcpwarden/policy.yaml:4:30: field `rules[0].match.process.uid`: ",
            "uid -1 is out of range",
        ),
        (
            "a bad era",
            "rules:\n  - id: a\n    action: deny\n    match: { era: legacy }\n",
            "/etc/mcpwarden/policy.yaml:4:19: field `rules[0].match.era`: ",
            "unknown variant `legacy`",
        ),
        (
            "a bad fail mode",
            "rules:\n  - id: a\n    action: deny\n    fail: maybe\n",
            "/etc/mcpwarden/policy.yaml:4:11: field `rules[0].fail`: ",
            "unknown variant `maybe`",
        ),
        (
            "a bad unknown_catalog",
            "unknown_catalog: allow\n",
            "/etc/mcpwarden/policy.yaml:1:18: field `unknown_catalog`: ",
            "unknown variant `allow`",
        ),
        (
            "an unknown limit",
            "limits: { max_depth: 3 }\n",
            "/etc/mcpwarden/policy.yaml:1:11: field `limits.max_depth`: ",
            "unknown field `max_depth`",
        ),
        (
            "a depth limit too deep to validate safely",
            "default: allow\nlimits:\n  max_json_depth: 1000\n",
            "/etc/mcpwarden/policy.yaml:3:3: field `limits`: ",
            "max_json_depth 1000 is outside 2..=256",
        ),
        (
            "a string where a number belongs",
            "hold_timeout_ms: soon\n",
            "/etc/mcpwarden/policy.yaml:1:18: field `hold_timeout_ms`: ",
            "invalid type",
        ),
        (
            "a server default without a match",
            "servers:\n  - default: deny\n",
            "/etc/mcpwarden/policy.yaml:2:5: field `servers[0]`: ",
            "missing field `match`",
        ),
        (
            "an empty glob list",
            "rules:\n  - id: a\n    action: deny\n    match: { tool: [] }\n",
            "/etc/mcpwarden/policy.yaml:4:20: field `rules[0].match.tool`: ",
            "an empty list matches nothing",
        ),
        (
            "broken YAML",
            "default: allow\nrules:\n\t- id: a\n",
            "/etc/mcpwarden/policy.yaml:3:1: field `rules`: ",
            "found character that cannot start any token",
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, prefix, message) in cases {
        let e = err(text);
        if !e.starts_with(prefix) || !e.contains(message) {
            failures.push(format!(
                "{what}: got {e:?}\n   want prefix {prefix:?} and {message:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_policy_file_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("perms");
    let f = dir.join("p.yaml");
    std::fs::write(&f, "default: deny\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
    let e = load(&f).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: refusing a file writable by group or others (mode 0664): `chmod go-w` it",
            f.display()
        )
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(load(&f).unwrap().default, Action::Deny);
}

#[test]
fn a_missing_policy_file_says_so() {
    let e = load(Path::new("/nonexistent/policy.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policy.yaml: cannot read:"),
        "{e}"
    );
}

#[test]
fn a_pins_file_is_read_relative_to_the_policy_and_bad_hashes_are_named() {
    let dir = temp_dir("pins-read");
    let hash = "ab".repeat(32);
    write_private(
        &dir.join("pins.yaml"),
        &format!("\"127.0.0.1:9000/mcp\":\n  add: {hash}\n"),
    );
    let p = parse("pins: { file: pins.yaml }\n", &dir.join("p.yaml")).unwrap();
    assert_eq!(p.pins_file(), Some(dir.join("pins.yaml").as_path()));
    assert_eq!(p.file_pins["127.0.0.1:9000/mcp"]["add"], hash);
    assert!(p.describe().contains("(1 pinned tools)"));

    write_private(&dir.join("pins.yaml"), "srv:\n  add: nothex\n");
    let e = parse("pins: { file: pins.yaml }\n", &dir.join("p.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}:2:8: field `srv.add`: `nothex` is not a SHA-256 in hex (64 hex digits)",
            dir.join("pins.yaml").display()
        )
    );

    // A pins file that does not exist yet is empty (the agent creates it).
    let p = parse("pins: { file: absent.yaml }\n", &dir.join("p.yaml")).unwrap();
    assert!(p.file_pins.is_empty());
}

#[test]
fn the_source_notices_a_rewrite_and_reports_a_bad_one() {
    let dir = temp_dir("reload");
    let f = dir.join("p.yaml");
    write_private(&f, "default: allow\n");
    let current = load(&f).unwrap();
    assert_eq!(current.default, Action::Allow);
    let mut src = PolicySource::new(&f);
    assert!(src.poll(false).is_none(), "nothing changed yet");

    // A rewrite (different size and inode through rename) is noticed.
    let tmp = dir.join("p.yaml.new");
    write_private(&tmp, "default: deny\nrules: []\n");
    std::fs::rename(&tmp, &f).unwrap();
    let current = match src.poll(false) {
        Some(Ok(p)) => p,
        other => panic!("want a new policy, got {other:?}"),
    };
    assert_eq!(current.default, Action::Deny);
    assert!(src.poll(false).is_none(), "reported once");

    // A bad rewrite is reported; the caller keeps the old policy.
    write_private(&f, "default: deny\nrules:\n  - id: x\n    action: nope\n");
    match src.poll(false) {
        Some(Err(e)) => assert!(
            e.to_string().contains(":4:13: field `rules[0].action`"),
            "{e}"
        ),
        other => panic!("want an error, got {other:?}"),
    }
    assert_eq!(current.default, Action::Deny);

    // SIGHUP forces a reload even without a change.
    write_private(&f, "default: audit\n");
    let _ = src.poll(false);
    match src.poll(true) {
        Some(Ok(p)) => assert_eq!(p.default, Action::Audit),
        other => panic!("want a forced reload, got {other:?}"),
    }

    // A removed file is reported once.
    std::fs::remove_file(&f).unwrap();
    assert!(matches!(
        src.poll(false),
        Some(Err(PolicyError::Read { .. }))
    ));
    assert!(src.poll(false).is_none());
}

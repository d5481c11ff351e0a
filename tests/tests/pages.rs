//! The collector's web pages in headless Chromium, filled with real traffic: the official
//! Python SDK client and server talk through the host, the agent captures both ends and
//! exports to a collector, and the browser (driven over the DevTools protocol) checks the
//! sessions table and its counts, a user filter, a click into a timeline with the call's
//! arguments and the failing call's error, the servers page's tools and a tool drift's diff.
//! The screenshots in `docs/` (README, "Sessions page") are taken here.

#[path = "pages/cdp.rs"]
mod cdp;
#[path = "pages/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdp::Browser;
use harness::{hs256_jwt, BearerClient, Collector};
use mcpwarden_tests::env::workspace_root;
use mcpwarden_tests::policy::{outcomes, PolicyServer};
use mcpwarden_tests::{free_port, Agent};
use serde_json::{json, Value};

const KEY: &[u8] = b"pages-test-hs256-key";

fn token(user: &str, role: &str) -> String {
    hs256_jwt(KEY, &json!({"sub": user, "roles": [role]}).to_string())
}

/// Polls the API until `ok` holds for the filtered session list.
fn wait_sessions(c: &Collector, query: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let page = c.get(&format!("/api/sessions?{query}"));
        let rows = page["sessions"].as_array().cloned().unwrap_or_default();
        if ok(&rows) {
            return rows;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the collector did not show the expected sessions: {page:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn row_of<'a>(rows: &'a [Value], user: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["user"] == user)
        .unwrap_or_else(|| panic!("no session of {user}: {rows:#?}"))
}

/// The table as rows of {column header: cell text}.
const TABLE_JS: &str = "(() => { const t = document.querySelector('#sessions-table'); if (!t) return []; \
    const text = c => { const chips = [...c.querySelectorAll('.chip')]; \
      return chips.length ? chips.map(x => x.textContent).join(' ') : c.innerText.trim(); }; \
    const head = [...t.tHead.rows[0].cells].map(c => c.textContent.trim()); \
    return [...t.tBodies[0].rows].map(r => Object.fromEntries([...r.cells].map((c, i) => [head[i], text(c)]).concat([['key', r.dataset.key]]))); })()";

#[test]
fn sessions_timeline_and_servers_pages_show_real_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hs256.key"), KEY).expect("write key");
    let config = dir.path().join("mcpwarden.yaml");
    std::fs::write(
        &config,
        "session_update_secs: 1\nidentity:\n  user_claim: sub\n  role_claim: roles\n  keys:\n    - hs256_secret_file: hs256.key\n",
    )
    .expect("write config");
    let collector = Collector::start(free_port(), free_port());
    let grpc = format!("grpc://127.0.0.1:{}", collector.grpc);
    let state = dir.path().join("state");
    let agent = Agent::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--export",
        &grpc,
        "--agent-id",
        "pages-agent",
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ]);
    let server = PolicyServer::start(free_port(), None, false);
    let url = server.url();

    // alice: a successful call and a failing one; bob: a call, then the server redefines
    // `add` and bob lists again (tool drift); carol: still talking while the pages are open
    // (a second call 10 s after the first).
    let alice = BearerClient::spawn(
        &url,
        &json!([[
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 2, "b": 3}},
            {"op": "call", "tool": "fail", "args": {"reason": "on purpose"}}
        ]]),
        &token("alice@example.com", "analyst"),
    )
    .finish();
    assert_eq!(
        outcomes(&alice),
        vec![vec!["ok", "ok", "tool_error"]],
        "{alice}"
    );
    let bob = BearerClient::spawn(
        &url,
        &json!([[
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 40, "b": 2}},
            {"op": "call", "tool": "redefine", "args": {}},
            {"op": "list"}
        ]]),
        &token("bob@example.com", "admin"),
    )
    .finish();
    assert_eq!(outcomes(&bob), vec![vec!["ok", "ok", "ok", "ok"]], "{bob}");
    let carol = BearerClient::spawn(
        &url,
        &json!([[
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 1, "b": 1}},
            {"op": "sleep", "ms": 10000},
            {"op": "call", "tool": "add", "args": {"a": 2, "b": 2}},
            {"op": "sleep", "ms": 40000}
        ]]),
        &token("carol@example.com", "analyst"),
    );

    // Only this test's server: other MCP traffic on the host is captured too.
    let server_filter = format!("server=127.0.0.1:{}", server.port());
    let rows = wait_sessions(&collector, &server_filter, |rows| {
        let done = |u: &str, calls: u64| {
            rows.iter()
                .any(|r| r["user"] == u && r["calls"].as_u64() >= Some(calls))
        };
        rows.len() == 3
            && done("alice@example.com", 4)
            && done("bob@example.com", 5)
            && done("carol@example.com", 3)
            && rows.iter().filter(|r| r["status"] == "ended").count() == 2
    });
    let alice_row = row_of(&rows, "alice@example.com").clone();
    let carol_row = row_of(&rows, "carol@example.com").clone();
    assert_eq!(carol_row["status"], "active", "{carol_row:#}");

    let docs = workspace_root().join("docs");
    let base = collector.base();
    let mut b = Browser::launch(1440, 900);

    // Sessions: one row per session, with the counts the agent reported.
    b.navigate(&format!("{base}/?{server_filter}"));
    let table = b.wait_for(
        &format!("(() => {{ const t = {TABLE_JS}; return t.length === 3 ? t : null; }})()"),
        "3 session rows",
    );
    let table = table.as_array().cloned().unwrap_or_default();
    for api_row in &rows {
        let user = api_row["user"].as_str().unwrap_or_default();
        let shown = table
            .iter()
            .find(|r| r["User"] == user)
            .unwrap_or_else(|| panic!("no row for {user}: {table:#?}"));
        assert_eq!(shown["key"], api_row["key"]);
        assert_eq!(shown["Calls"], api_row["calls"].to_string(), "{user}");
        assert_eq!(shown["Errors"], api_row["errors"].to_string(), "{user}");
        assert_eq!(shown["Status"], api_row["status"], "{user}");
        assert!(
            shown["Client"]
                .as_str()
                .is_some_and(|c| c.starts_with("mcpwarden-policy-client")),
            "{shown}"
        );
    }
    // Requests the SDK client made: initialize, tools/list and two calls (alice); initialize,
    // two lists and two calls (bob). The failing call is a tool error (a result, not an error).
    let by_user = |u: &str| {
        table
            .iter()
            .find(|r| r["User"] == u)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_user("alice@example.com")["Calls"], "4");
    assert_eq!(by_user("bob@example.com")["Calls"], "5");
    assert_eq!(by_user("alice@example.com")["Tools"], "add fail");
    assert_eq!(by_user("carol@example.com")["Status"], "active");
    assert_eq!(by_user("alice@example.com")["Role"], "analyst");
    b.screenshot(&docs.join("sessions.png"));

    // The open page follows the active session: carol's next call shows up without a reload.
    b.eval("window.__sameDocument = true")
        .unwrap_or_else(|e| panic!("mark the document: {e}"));
    b.wait_for(
        &format!(
            "(() => {{ const c = {TABLE_JS}.find(r => r.User === 'carol@example.com'); \
             return window.__sameDocument === true && c && c.Calls === '4' && c.Status === 'active'; }})()"
        ),
        "carol's second call on the open page",
    );

    // A user filter narrows the list, lands in the URL, and the exports follow it.
    b.type_into("input[name=user]", "bob@example.com");
    b.click("button[type=submit]");
    b.wait_for(
        "location.search.includes('user=bob%40example.com')",
        "the filter in the URL",
    );
    let filtered = b.wait_for(
        &format!("(() => {{ const t = {TABLE_JS}; return t.length === 1 ? t : null; }})()"),
        "one row for bob",
    );
    assert_eq!(filtered[0]["User"], "bob@example.com", "{filtered}");
    let csv = b.wait_for(
        "fetch(document.querySelector('#export-csv').href).then(r => r.text())",
        "the CSV export",
    );
    let csv = csv.as_str().unwrap_or_default();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.contains("bob@example.com") && !csv.contains("alice@"),
        "{csv}"
    );
    let json_rows = b.wait_for(
        "fetch(document.querySelector('#export-json').href).then(r => r.json())",
        "the JSON export",
    );
    assert_eq!(json_rows.as_array().map(Vec::len), Some(1), "{json_rows}");

    // A click on alice's row opens her timeline.
    b.navigate(&format!("{base}/?{server_filter}"));
    let key = alice_row["key"].as_str().unwrap_or_default();
    b.click(&format!("tr[data-key='{key}'] td.user"));
    b.wait_for(
        &format!("location.pathname === '/session/{key}' && document.querySelector('#timeline')"),
        "alice's timeline",
    );
    let text = b.text();
    for want in [
        "initialize",
        "tools/list",
        "tools/call",
        "a: 2, b: 3",
        "reason: \"on purpose\"",
        "tool error",
        "Error executing tool fail",
        "alice@example.com",
        "Session ended",
    ] {
        assert!(text.contains(want), "the timeline lacks {want:?}:\n{text}");
    }
    // Both ends were captured: each call shows the client and the server process.
    assert!(
        text.contains("· client") && text.contains("· server"),
        "{text}"
    );
    let bars = b
        .eval("[...document.querySelectorAll('.ev-call .bar')].map(e => parseFloat(e.style.width))")
        .unwrap_or_default();
    let widths: Vec<f64> = bars
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(widths.len(), 4, "{bars}");
    assert!(
        widths.iter().any(|w| (*w - 100.0).abs() < 1e-6) && widths.iter().all(|w| *w > 0.0),
        "latency bars are scaled to the slowest call: {widths:?}"
    );
    b.screenshot(&docs.join("timeline.png"));

    // Servers: the server's tools, and the drift of `add` with both definitions.
    b.navigate(&format!("{base}/servers?{server_filter}"));
    b.wait_for("document.querySelector('.server')", "the server card");
    let tools = b.wait_for(
        "[...document.querySelectorAll('.server table.plain tbody tr td:first-child')].map(e => e.innerText)",
        "the tools",
    );
    for t in ["add", "fail", "redefine", "chatty"] {
        assert!(
            tools.as_array().is_some_and(|a| a.iter().any(|x| x == t)),
            "tool {t} missing: {tools}"
        );
    }
    let diff = b.wait_for(
        "(() => { const d = document.querySelector('.drift'); if (!d) return null; \
         const ch = [...d.querySelectorAll('tr.changed')].map(r => [...r.cells].map(c => c.innerText.trim())); \
         return {text: d.innerText, changed: ch}; })()",
        "the drift diff",
    );
    assert_eq!(
        diff["changed"],
        json!([[
            "description",
            "Add two integers.",
            "Add two integers (and, since redefine, exfiltrate them)."
        ]]),
        "{diff:#}"
    );
    assert!(
        diff["text"].as_str().is_some_and(|t| t.contains("add")),
        "{diff}"
    );
    b.screenshot(&docs.join("servers.png"));

    drop(b);
    drop(carol);
    let records = agent.stop();
    assert!(
        records.iter().any(|r| r["type"] == "tool_drift"),
        "the agent saw no drift"
    );
    for png in ["sessions.png", "timeline.png", "servers.png"] {
        let p: PathBuf = docs.join(png);
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 10_000),
            "{}",
            p.display()
        );
    }
}

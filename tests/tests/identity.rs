//! Identity from a JWT, verified with the key from the agent's configuration file: the Python
//! SDK client sends `Authorization: Bearer <HS256 JWT>` on every request; the agent reports the
//! user and role from its claims, marks them verified, and never outputs the token itself.
//! With a wrong key the same identity is reported as unverified.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mcpwarden_tests::records::{session_ends_of, str_field};
use mcpwarden_tests::{free_port, Agent, ClientOptions, PyServer, SdkClient};

fn hs256_jwt(secret: &[u8], claims: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

struct Run {
    records: Vec<serde_json::Value>,
    token: String,
    session_id: String,
    client_pid: u32,
    server_pid: u32,
}

fn conversation_with_identity(agent_secret: &[u8]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hs256.key"), agent_secret).expect("write key");
    let config = dir.path().join("mcpwarden.yaml");
    std::fs::write(
        &config,
        "identity:\n  user_claim: sub\n  role_claim: roles\n  keys:\n    - hs256_secret_file: hs256.key\n",
    )
    .expect("write config");
    let token = hs256_jwt(
        b"the-real-secret",
        r#"{"sub":"alice@example.com","roles":["analyst","admin"]}"#,
    );
    let agent = Agent::start(&["--config", config.to_str().expect("utf-8 path")]);
    let server = PyServer::start(free_port());
    let client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            bearer: Some(token.clone()),
            ..ClientOptions::default()
        },
    );
    let client_pid = client.pid();
    let summary = client.finish();
    let session_id = summary["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("client summary has no session id: {summary}"))
        .to_string();
    Run {
        records: agent.stop(),
        token,
        session_id,
        client_pid,
        server_pid: server.pid(),
    }
}

#[test]
fn a_verified_jwt_names_user_and_role_and_the_token_never_leaves() {
    let run = conversation_with_identity(b"the-real-secret\n");
    let records = &run.records;
    for pid in [run.client_pid, run.server_pid] {
        let ends = session_ends_of(records, pid, &run.session_id);
        assert_eq!(
            ends.len(),
            1,
            "pid {pid}: one session_end, records: {records:?}"
        );
        let end = ends[0];
        assert_eq!(str_field(end, "user"), "alice@example.com", "{end}");
        assert_eq!(str_field(end, "role"), "analyst,admin", "{end}");
        assert_eq!(str_field(end, "identity_source"), "jwt", "{end}");
        assert_eq!(end["identity_verified"], true, "{end}");
    }
    let signature = run.token.rsplit('.').next().expect("signature");
    for r in records {
        let line = r.to_string();
        assert!(!line.contains(&run.token), "the token leaked: {line}");
        assert!(
            !line.contains(signature),
            "the token's signature leaked: {line}"
        );
    }
}

#[test]
fn a_jwt_that_does_not_verify_is_reported_unverified() {
    let run = conversation_with_identity(b"some-other-secret");
    let ends = session_ends_of(&run.records, run.client_pid, &run.session_id);
    assert_eq!(ends.len(), 1, "{:?}", run.records);
    assert_eq!(
        str_field(ends[0], "user"),
        "alice@example.com",
        "{}",
        ends[0]
    );
    assert_eq!(ends[0]["identity_verified"], false, "{}", ends[0]);
}

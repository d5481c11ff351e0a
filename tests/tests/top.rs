//! `mcpwarden top` against a running agent: an active SDK session shows in its frame.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpwarden_tests::{free_port, test_env, Agent, ClientOptions, PyServer, SdkClient};

#[test]
fn top_shows_the_active_session_of_a_running_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("control.sock");
    let agent = Agent::start(&["--control-socket", socket.to_str().unwrap_or_default()]);
    let server = PyServer::start(free_port());
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_after_initialize: true,
            ..ClientOptions::default()
        },
    );
    client.wait_initialized();
    let session = server.session_ids().first().cloned().expect("a session id");
    let env = test_env();
    let started = Instant::now();
    let frame = loop {
        let out = Command::new(&env.agent_bin)
            .args([
                "top",
                "--once",
                "--width",
                "200",
                "--height",
                "12",
                "--control-socket",
            ])
            .arg(&socket)
            .output()
            .expect("run mcpwarden top");
        assert!(
            out.status.success(),
            "mcpwarden top failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&session[..16]) && text.contains("mcpwarden-test-client") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the session {session} never showed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Both ends of the session are on this host: the client and the server process.
    assert!(frame.contains("active sessions"), "{frame}");
    assert!(
        frame.contains(&format!("127.0.0.1:{}/mcp", server.port())),
        "{frame}"
    );
    assert!(
        frame.contains(" client ") && frame.contains(" server "),
        "{frame}"
    );
    client.resume();
    client.finish();
    let _ = agent.stop();
}

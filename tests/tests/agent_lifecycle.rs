//! The agent's contract with the host: it refuses to run without root with one line saying
//! why, and a signal detaches everything it attached.

use std::os::unix::process::CommandExt;
use std::process::Command;

use mcpwarden_tests::agent::Agent;
use mcpwarden_tests::env::test_env;

/// Names of programs the agent loads in its default (sock) capture mode, as the kernel keeps
/// them (BPF_OBJ_NAME_LEN: 15 bytes + NUL).
const OUR_PROGRAMS: &[&str] = &[
    "sock_send_capture",
    "sock_recv_capture",
    "inet_sock_set_state",
    "sched_process_exec",
    "ssl_write",
    "ssl_read_ex_ret",
];

fn loaded_program_names() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .collect()
}

fn ours_loaded() -> Vec<String> {
    let names = loaded_program_names();
    OUR_PROGRAMS
        .iter()
        .map(|n| &n[..n.len().min(15)])
        .filter(|n| names.iter().any(|l| l == n))
        .map(str::to_string)
        .collect()
}

fn detaches_on(signal: i32) {
    assert!(
        ours_loaded().is_empty(),
        "programs named like ours are loaded before the agent starts: {:?} (another agent running?)",
        ours_loaded()
    );
    let agent = Agent::start(&[]);
    let loaded = ours_loaded();
    assert_eq!(
        loaded.len(),
        OUR_PROGRAMS.len(),
        "while the agent runs, all of {OUR_PROGRAMS:?} should be loaded; found {loaded:?}"
    );
    agent.stop_with(signal);
    assert_eq!(
        ours_loaded(),
        Vec::<String>::new(),
        "after signal {signal} the agent exited but left programs loaded"
    );
}

#[test]
fn sigint_detaches_every_program() {
    detaches_on(libc::SIGINT);
}

#[test]
fn sigterm_detaches_every_program() {
    detaches_on(libc::SIGTERM);
}

#[test]
fn without_root_the_agent_exits_nonzero_with_one_line_naming_what_is_missing() {
    let env = test_env();
    let out = Command::new(&env.agent_bin)
        .arg("run")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("cannot start the agent as uid 65534");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the agent run as nobody should fail, it exited with {}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "want exactly one line on stderr, got: {stderr:?}"
    );
    assert!(
        lines[0].contains("needs root"),
        "the line should say root is needed, got: {}",
        lines[0]
    );
}

//! Deployment artefacts: the container image really runs the agent, and the Kubernetes
//! manifest and Helm chart ask for exactly the privileges, mounts, probes and limits the
//! README documents.
//!
//! The image test starts its own docker engine (Debian's docker.io, see
//! `mcpwarden_tests::container`), builds `mcpwarden:e2e` with `cargo xtask image` and runs it
//! with the flags that work on these machines (PLATFORM.md: `--privileged` does not). The
//! agent inside, in the host PID namespace, must report a plaintext and a TLS conversation
//! between SDK peers on the host exactly, as the agent outside does.

use mcpwarden_tests::container::{read_records, Container, Dockerd};
use mcpwarden_tests::conversation::{assert_both_sides, assert_peers_behaved};
use mcpwarden_tests::{
    free_port, run_py_client, test_env, ClientOptions, PyServer, SdkClient, SelfSignedCert,
};

/// The `docker run` flags PLATFORM.md lists as working here, plus the host network (as the
/// DaemonSet's hostNetwork).
const RUN_FLAGS: &[&str] = &[
    "--pid=host",
    "--network=host",
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--cap-add",
    "SYS_PTRACE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "-v",
    "/sys/kernel:/sys/kernel",
];

#[test]
fn the_image_runs_the_agent_which_reports_host_conversations_exactly() {
    let env = test_env();
    let dockerd = Dockerd::start();
    let tag = "mcpwarden:e2e";
    dockerd.build_agent_image(&env.agent_bin, tag);

    let out = tempfile::Builder::new()
        .prefix("mcpwarden-e2e-container-")
        .tempdir()
        .expect("cannot create the container's output directory");
    let volume = format!("{}:/out", out.path().display());
    let mut flags = RUN_FLAGS.to_vec();
    flags.extend(["-v", &volume]);
    let container = Container::run(
        &dockerd,
        "mcpwarden-e2e-agent",
        &flags,
        tag,
        &[
            "run",
            "--output",
            "/out/records.jsonl",
            "--ready-file",
            "/out/ready",
        ],
    );
    container.wait_for_file(&out.path().join("ready"));

    // Plain HTTP on the host.
    let plain = PyServer::start(free_port());
    let plain_comm = plain.comm();
    let plain_client = run_py_client(&plain.url());
    let plain_session = assert_peers_behaved(&plain_client, &plain).to_string();

    // HTTPS on the host: the agent in the container attaches to the host's libssl through
    // /proc/PID/root (host PID namespace, CAP_SYS_PTRACE).
    let cert = SelfSignedCert::generate();
    let tls = PyServer::start_tls(free_port(), &cert);
    let tls_comm = tls.comm();
    let tls_client = SdkClient::spawn(
        &tls.url(),
        &ClientOptions {
            cafile: Some(cert.cert.clone()),
            ..ClientOptions::default()
        },
    )
    .finish();
    let tls_session = assert_peers_behaved(&tls_client, &tls).to_string();

    container.stop();
    let records = read_records(&out.path().join("records.jsonl"));
    assert_both_sides(
        &records,
        &plain_client,
        &plain_session,
        plain.pid(),
        &plain_comm,
        plain.port(),
    );
    assert_both_sides(
        &records,
        &tls_client,
        &tls_session,
        tls.pid(),
        &tls_comm,
        tls.port(),
    );
}

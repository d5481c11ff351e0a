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

// ---- Kubernetes: the manifest and the Helm chart -------------------------------------------

use mcpwarden_tests::env::workspace_root;
use mcpwarden_tests::kubernetes::{parse_documents, render_chart, DiscoveryStub, Release};
use serde_json::Value;

const RELEASE: Release = Release {
    name: "mcpwarden",
    namespace: "mcpwarden",
};
/// Where the default chart and the manifest send records.
const DEFAULT_EXPORT: &str = "grpc://mcpwarden-collector.mcpwarden.svc:50051";

fn as_json(docs: Vec<serde_norway::Value>) -> Vec<Value> {
    docs.into_iter()
        .map(|d| serde_json::to_value(d).expect("YAML document as JSON"))
        .collect()
}

fn manifest(name: &str) -> Vec<Value> {
    let path = workspace_root().join("deploy/kubernetes").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    as_json(parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn chart(overrides: &str) -> Vec<Value> {
    let dir = workspace_root().join("deploy/helm/mcpwarden");
    as_json(render_chart(&dir, &RELEASE, overrides).unwrap_or_else(|e| panic!("chart: {e}")))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one {kind} {name}, documents: {:?}",
        docs.iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// The value following `flag` in `args`.
fn flag_value<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).and_then(Value::as_str)
}

fn sorted(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("want a list, got {list}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("want strings in {list}"))
                .to_string()
        })
        .collect();
    v.sort();
    v
}

struct Want<'a> {
    sys_admin: bool,
    export: Option<&'a str>,
    metrics_port: u64,
}

/// Every field the README's "Deploy" section promises about the agent's DaemonSet.
fn check_agent_daemonset(ds: &Value, want: &Want) {
    assert_eq!(ds["apiVersion"], "apps/v1");
    let spec = &ds["spec"];
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate", "{ds}");
    let selector = &spec["selector"]["matchLabels"];
    let pod = &spec["template"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "pod labels must match the selector"
        );
    }
    let pod = &pod["spec"];
    assert_eq!(pod["hostPID"], true, "hostPID");
    assert_eq!(pod["hostNetwork"], true, "hostNetwork");
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists"
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "a toleration with operator Exists and no key/effect runs the agent on every node: {}",
        pod["tolerations"]
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one agent container");
    let c = &containers[0];

    // Privileges: exactly these capabilities, nothing else.
    let sc = &c["securityContext"];
    let mut add = vec!["BPF", "NET_ADMIN", "PERFMON", "SYS_PTRACE"];
    if want.sys_admin {
        add.push("SYS_ADMIN");
    }
    add.sort();
    assert_eq!(sorted(&sc["capabilities"]["add"]), add, "capabilities.add");
    assert_eq!(
        sorted(&sc["capabilities"]["drop"]),
        ["ALL"],
        "capabilities.drop"
    );
    assert_eq!(sc["privileged"], false, "privileged must be false: {sc}");
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "readOnlyRootFilesystem: {sc}"
    );
    if want.sys_admin {
        assert!(sc.get("allowPrivilegeEscalation").is_none(), "{sc}");
    } else {
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    }

    // Mounts: each host path at the same place in the container.
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let mounted_host_path = |path: &str| {
        let volume = volumes
            .iter()
            .find(|v| v["hostPath"]["path"] == path)
            .unwrap_or_else(|| panic!("no hostPath volume for {path}: {volumes:?}"));
        mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("hostPath {path} is not mounted: {mounts:?}"))
            .clone()
    };
    for path in [
        "/sys/kernel/tracing",
        "/sys/fs/bpf",
        "/sys/kernel/btf",
        "/sys/fs/cgroup",
        "/run/mcpwarden",
    ] {
        let mount = mounted_host_path(path);
        assert_eq!(
            mount["mountPath"], path,
            "{path} mounted at the same path: {mount}"
        );
    }
    assert_eq!(mounted_host_path("/sys/kernel/btf")["readOnly"], true);
    assert_eq!(mounted_host_path("/sys/fs/cgroup")["readOnly"], true);
    let config = volumes
        .iter()
        .find(|v| v["configMap"].is_object())
        .expect("a ConfigMap volume");
    assert_eq!(config["configMap"]["name"], "mcpwarden");
    assert_eq!(
        config["configMap"]["defaultMode"], 0o444,
        "not writable by anyone"
    );
    let config_mount = mounts
        .iter()
        .find(|m| m["name"] == config["name"])
        .expect("config mounted");
    assert_eq!(config_mount["mountPath"], "/etc/mcpwarden");
    assert!(
        config_mount.get("subPath").is_none(),
        "subPath mounts never see ConfigMap updates"
    );

    // Arguments.
    let args = c["args"].as_array().expect("args");
    assert_eq!(args[0], "run");
    let metrics_addr = format!("0.0.0.0:{}", want.metrics_port);
    assert_eq!(
        flag_value(args, "--metrics-addr"),
        Some(metrics_addr.as_str())
    );
    assert_eq!(
        flag_value(args, "--control-socket"),
        Some("/run/mcpwarden/control.sock")
    );
    assert_eq!(
        flag_value(args, "--policy"),
        Some("/etc/mcpwarden/policy.yaml")
    );
    assert_eq!(
        flag_value(args, "--config"),
        Some("/etc/mcpwarden/config.yaml")
    );
    assert_eq!(flag_value(args, "--export"), want.export, "args: {args:?}");

    // Identity from the downward API.
    let env = c["env"].as_array().expect("env");
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in env: {env:?}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
    }

    // Probes on the metrics port.
    let ports = c["ports"].as_array().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(metrics["containerPort"], want.metrics_port);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}: {get}");
        assert_eq!(get["port"], "metrics", "{probe} on the metrics port: {get}");
    }

    // Resources.
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res} missing: {}",
                c["resources"]
            );
        }
    }
}

fn check_collector(docs: &[Value], name: &str, store: &str) {
    let deployment = find(docs, "Deployment", name);
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"].as_array().expect("collector args");
    assert_eq!(args[0], "collector");
    assert_eq!(flag_value(args, "--grpc"), Some("0.0.0.0:50051"));
    assert_eq!(flag_value(args, "--http"), Some("0.0.0.0:8080"));
    assert_eq!(flag_value(args, "--store"), Some(store));
    assert_eq!(
        sorted(&c["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert!(c["securityContext"]["capabilities"].get("add").is_none());
    let service = find(docs, "Service", name);
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(ports, [50051, 8080]);
}

fn check_config_map(docs: &[Value]) {
    let cm = find(docs, "ConfigMap", "mcpwarden");
    for key in ["policy.yaml", "config.yaml"] {
        let text = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap lacks {key}: {cm}"));
        let parsed: serde_norway::Value = serde_norway::from_str(text)
            .unwrap_or_else(|e| panic!("ConfigMap {key} is not YAML ({e}): {text}"));
        assert!(
            parsed.is_mapping(),
            "ConfigMap {key} must be a YAML mapping: {text}"
        );
    }
}

#[test]
fn the_daemonset_manifest_asks_for_exactly_the_documented_privileges() {
    let docs = manifest("daemonset.yaml");
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole/mcpwarden",
            "ClusterRoleBinding/mcpwarden",
            "ConfigMap/mcpwarden",
            "DaemonSet/mcpwarden",
            "Namespace/mcpwarden",
            "Service/mcpwarden-metrics",
            "ServiceAccount/mcpwarden",
        ]
    );
    check_agent_daemonset(
        find(&docs, "DaemonSet", "mcpwarden"),
        &Want {
            sys_admin: true,
            export: Some(DEFAULT_EXPORT),
            metrics_port: 9464,
        },
    );
    check_config_map(&docs);
    check_collector(
        &manifest("collector.yaml"),
        "mcpwarden-collector",
        "sqlite:///var/lib/mcpwarden/collector.db",
    );
}

#[test]
fn the_chart_with_default_values_renders_the_manifests_objects() {
    let docs = chart("{}");
    let ds = find(&docs, "DaemonSet", "mcpwarden");
    check_agent_daemonset(
        ds,
        &Want {
            sys_admin: true,
            export: Some(DEFAULT_EXPORT),
            metrics_port: 9464,
        },
    );
    check_config_map(&docs);
    check_collector(
        &docs,
        "mcpwarden-collector",
        "sqlite:///var/lib/mcpwarden/collector.db",
    );

    // The chart and the plain manifests stay in step: same pod, same files, same collector.
    let plain = manifest("daemonset.yaml");
    assert_eq!(
        ds["spec"],
        find(&plain, "DaemonSet", "mcpwarden")["spec"],
        "the chart's DaemonSet spec differs from deploy/kubernetes/daemonset.yaml's"
    );
    assert_eq!(
        find(&docs, "ConfigMap", "mcpwarden")["data"],
        find(&plain, "ConfigMap", "mcpwarden")["data"]
    );
    let collector = manifest("collector.yaml");
    assert_eq!(
        find(&docs, "Deployment", "mcpwarden-collector")["spec"],
        find(&collector, "Deployment", "mcpwarden-collector")["spec"]
    );
    assert_eq!(
        find(&docs, "ClusterRole", "mcpwarden")["rules"],
        find(&plain, "ClusterRole", "mcpwarden")["rules"]
    );
    assert_eq!(
        find(&docs, "Service", "mcpwarden-metrics")["spec"],
        find(&plain, "Service", "mcpwarden-metrics")["spec"]
    );
}

#[test]
fn the_chart_values_drop_sys_admin_move_ports_and_turn_the_collector_off() {
    let docs = chart(
        "agent: {capabilities: {sysAdmin: false}, metricsPort: 9500, extraArgs: [--payloads, 'off']}\n\
         collector: {enabled: false}\n",
    );
    let ds = find(&docs, "DaemonSet", "mcpwarden");
    check_agent_daemonset(
        ds,
        &Want {
            sys_admin: false,
            export: None,
            metrics_port: 9500,
        },
    );
    let args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    assert_eq!(
        flag_value(args, "--payloads"),
        Some("off"),
        "extraArgs: {args:?}"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "Deployment"),
        "collector.enabled=false renders no collector"
    );
    assert_eq!(
        find(&docs, "Service", "mcpwarden-metrics")["spec"]["ports"][0]["port"],
        9500
    );

    let docs = chart("agent: {export: 'grpc://collector.example:7700'}\n");
    check_agent_daemonset(
        find(&docs, "DaemonSet", "mcpwarden"),
        &Want {
            sys_admin: true,
            export: Some("grpc://collector.example:7700"),
            metrics_port: 9464,
        },
    );

    let docs = chart("collector: {store: 'postgres://mcpwarden@db:5432/mcpwarden'}\n");
    check_collector(
        &docs,
        "mcpwarden-collector",
        "postgres://mcpwarden@db:5432/mcpwarden",
    );
}

#[test]
fn kubectl_reads_the_manifests_and_the_rendered_chart() {
    if !std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("kubectl is not installed: the dry-run check does not apply on this machine");
        return;
    }
    let stub = DiscoveryStub::start();
    let root = workspace_root().join("deploy/kubernetes");
    let out = stub.kubectl_apply_dry_run(&root.join("daemonset.yaml"));
    for line in [
        "namespace/mcpwarden created (dry run)",
        "serviceaccount/mcpwarden created (dry run)",
        "clusterrole.rbac.authorization.k8s.io/mcpwarden created (dry run)",
        "clusterrolebinding.rbac.authorization.k8s.io/mcpwarden created (dry run)",
        "configmap/mcpwarden created (dry run)",
        "daemonset.apps/mcpwarden created (dry run)",
        "service/mcpwarden-metrics created (dry run)",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "kubectl did not say {line:?}:\n{out}"
        );
    }
    let out = stub.kubectl_apply_dry_run(&root.join("collector.yaml"));
    assert!(
        out.contains("deployment.apps/mcpwarden-collector created (dry run)"),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("chart.yaml");
    let text: Vec<String> = chart("{}")
        .iter()
        .map(|d| serde_norway::to_string(d).expect("YAML"))
        .collect();
    std::fs::write(&rendered, text.join("---\n")).expect("write the rendered chart");
    let out = stub.kubectl_apply_dry_run(&rendered);
    assert_eq!(
        out.lines().count(),
        text.len(),
        "one line per rendered object:\n{out}"
    );
    assert!(
        out.contains("daemonset.apps/mcpwarden created (dry run)"),
        "{out}"
    );
}

//! Kubernetes artefacts without a cluster: render the Helm chart, parse manifests, and let
//! `kubectl apply --dry-run=client` read them.
//!
//! `helm` is not packaged by Debian and no other registry is reachable here, so
//! [`render_chart`] renders the subset of Helm's template language the chart uses
//! (deploy/helm/mcpwarden/values.yaml lists it): `{{ .Values.a.b }}`, `.Release.Name`,
//! `.Release.Namespace`, `.Chart.Name/Version/AppVersion`, string and integer literals,
//! pipelines with `toYaml`, `nindent N`, `indent N` and `quote`, `if`/`else`/`end`, and the
//! `{{-`/`-}}` whitespace trimming, with Helm's semantics. Anything else is an error, so the
//! chart cannot drift beyond what the test can check.
//!
//! `kubectl apply --dry-run=client` still asks an API server which kinds exist (discovery)
//! and whether each object is already there. [`DiscoveryStub`] answers exactly that for the
//! kinds the manifests use, and "not found" for every object, so kubectl decodes every
//! document as the API types it names and reports what it would create.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_norway::{Mapping, Value};

/// Why a template did not render.
#[derive(Debug)]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.template, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// The release a chart is rendered for.
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// Renders every template of the chart in `dir` (templates/*.yaml, in name order) with its
/// values.yaml deep-merged with `overrides` (YAML); returns the documents, empty ones left out.
pub fn render_chart(
    dir: &Path,
    release: &Release,
    overrides: &str,
) -> Result<Vec<Value>, TemplateError> {
    let err = |template: &str, message: String| TemplateError {
        template: template.to_string(),
        message,
    };
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| err(name, e.to_string()));
    let mut values: Value = serde_norway::from_str(&read("values.yaml")?)
        .map_err(|e| err("values.yaml", e.to_string()))?;
    let overrides: Value =
        serde_norway::from_str(overrides).map_err(|e| err("overrides", e.to_string()))?;
    merge(&mut values, overrides);
    let chart: Value = serde_norway::from_str(&read("Chart.yaml")?)
        .map_err(|e| err("Chart.yaml", e.to_string()))?;
    let mut chart_ctx = Mapping::new();
    for (key, field) in [
        ("Name", "name"),
        ("Version", "version"),
        ("AppVersion", "appVersion"),
    ] {
        chart_ctx.insert(key.into(), chart[field].clone());
    }
    let mut release_ctx = Mapping::new();
    release_ctx.insert("Name".into(), release.name.into());
    release_ctx.insert("Namespace".into(), release.namespace.into());
    let mut ctx = Mapping::new();
    ctx.insert("Values".into(), values);
    ctx.insert("Release".into(), Value::Mapping(release_ctx));
    ctx.insert("Chart".into(), Value::Mapping(chart_ctx));
    let ctx = Value::Mapping(ctx);

    let templates = dir.join("templates");
    let mut names: Vec<String> = std::fs::read_dir(&templates)
        .map_err(|e| err("templates", e.to_string()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && !n.starts_with('_'))
        .collect();
    names.sort();
    let mut docs = Vec::new();
    for name in names {
        let source = read(&format!("templates/{name}"))?;
        let text = render(&source, &ctx).map_err(|m| err(&name, m))?;
        docs.extend(parse_documents(&text).map_err(|m| err(&name, format!("{m}\n{text}")))?);
    }
    Ok(docs)
}

/// Parses a multi-document YAML text; empty documents are left out.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| e.to_string())?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Helm's values merge: mappings merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, Value::Null) if !slot.is_null() => {}
        (slot, v) => *slot = v,
    }
}

// ---- the template language subset --------------------------------------------------------

enum Node {
    Text(String),
    Output(String),
    If {
        cond: String,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// Renders one template against `ctx` (a mapping with Values, Release, Chart).
pub fn render(source: &str, ctx: &Value) -> Result<String, String> {
    let tokens = lex(source)?;
    let mut pos = 0;
    let (nodes, end) = parse(&tokens, &mut pos)?;
    if let Some(stray) = end {
        return Err(format!("`{{{{ {stray} }}}}` without `if`"));
    }
    let mut out = String::new();
    eval_nodes(&nodes, ctx, &mut out)?;
    Ok(out)
}

enum Token {
    Text(String),
    Action(String),
}

fn lex(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = source;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before = after.starts_with("- ");
        if trim_before {
            text = text.trim_end();
        }
        tokens.push(Token::Text(text.to_string()));
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` at byte {start}"))?;
        let mut inner = &after[..end];
        if trim_before {
            inner = &inner[2..];
        }
        trim_next = inner.ends_with(" -");
        if trim_next {
            inner = &inner[..inner.len() - 2];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            tokens.push(Token::Action(inner.to_string()));
        }
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    tokens.push(Token::Text(text.to_string()));
    Ok(tokens)
}

/// Parses until `else`/`end` (returned) or the end of the tokens.
fn parse(tokens: &[Token], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while *pos < tokens.len() {
        let token = &tokens[*pos];
        *pos += 1;
        match token {
            Token::Text(t) => nodes.push(Node::Text(t.clone())),
            Token::Action(a) if a == "else" || a == "end" => return Ok((nodes, Some(a.clone()))),
            Token::Action(a) => {
                if let Some(cond) = a.strip_prefix("if ") {
                    let (then, end) = parse(tokens, pos)?;
                    let otherwise = match end.as_deref() {
                        Some("end") => Vec::new(),
                        Some("else") => match parse(tokens, pos)? {
                            (nodes, Some(e)) if e == "end" => nodes,
                            _ => return Err(format!("`if {cond}` … `else` without `end`")),
                        },
                        _ => return Err(format!("`if {cond}` without `end`")),
                    };
                    nodes.push(Node::If {
                        cond: cond.trim().to_string(),
                        then,
                        otherwise,
                    });
                } else {
                    let keyword = a.split_whitespace().next().unwrap_or("");
                    if ["range", "with", "define", "template", "block", "include"]
                        .contains(&keyword)
                    {
                        return Err(format!("`{keyword}` is outside the supported subset"));
                    }
                    nodes.push(Node::Output(a.clone()));
                }
            }
        }
    }
    Ok((nodes, None))
}

fn eval_nodes(nodes: &[Node], ctx: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(pipeline) => out.push_str(&to_text(&eval_pipeline(pipeline, ctx)?)?),
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if truthy(&eval_pipeline(cond, ctx)?) {
                    then
                } else {
                    otherwise
                };
                eval_nodes(branch, ctx, out)?;
            }
        }
    }
    Ok(())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(_) => true,
    }
}

/// How Go templates print a value (Helm prints a missing value as nothing).
fn to_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "printing a collection needs toYaml: {}",
            to_yaml(other)?
        )),
    }
}

/// Helm's toYaml: YAML without the final newline.
fn to_yaml(v: &Value) -> Result<String, String> {
    serde_norway::to_string(v)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| e.to_string())
}

fn split_words(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = command.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::from("\"");
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.push(chars.next().ok_or("dangling escape")?),
                    Some(c) => word.push(c),
                    None => return Err(format!("unterminated string in `{command}`")),
                }
            }
            words.push(word);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    Ok(words)
}

fn term(word: &str, ctx: &Value) -> Result<Value, String> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Value::String(s.to_string()));
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Value::Number(n.into()));
    }
    let Some(path) = word.strip_prefix('.') else {
        return Err(format!("unknown term `{word}`"));
    };
    let mut v = ctx;
    for part in path.split('.') {
        v = match v {
            Value::Mapping(m) => m.get(part).unwrap_or(&Value::Null),
            Value::Null => &Value::Null,
            _ => {
                return Err(format!(
                    "`{word}`: `{part}` of a value that is not a mapping"
                ))
            }
        };
    }
    Ok(v.clone())
}

fn eval_pipeline(pipeline: &str, ctx: &Value) -> Result<Value, String> {
    let mut acc: Option<Value> = None;
    for command in pipeline.split('|') {
        let words = split_words(command)?;
        let (head, args) = words
            .split_first()
            .ok_or_else(|| format!("empty command in `{pipeline}`"))?;
        let mut args: Vec<Value> = args
            .iter()
            .map(|w| term(w, ctx))
            .collect::<Result<_, _>>()?;
        if let Some(prev) = acc.take() {
            args.push(prev);
        }
        let int_arg = |v: &Value| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("`{head}` wants a number, got {v:?}"))
        };
        let value = match (head.as_str(), args.as_slice()) {
            (_, []) if head.starts_with('.') || head.starts_with('"') => term(head, ctx)?,
            ("toYaml", [v]) => Value::String(to_yaml(v)?),
            ("quote", [v]) => {
                let s = to_text(v)?;
                Value::String(format!(
                    "\"{}\"",
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                ))
            }
            ("indent", [n, v]) => Value::String(indent(int_arg(n)?, &to_text(v)?)),
            ("nindent", [n, v]) => {
                Value::String(format!("\n{}", indent(int_arg(n)?, &to_text(v)?)))
            }
            _ => return Err(format!("`{command}` is outside the supported subset")),
        };
        acc = Some(value);
    }
    acc.ok_or_else(|| format!("empty pipeline `{pipeline}`"))
}

fn indent(n: usize, text: &str) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", text.replace('\n', &format!("\n{pad}")))
}

// ---- kubectl without a cluster -------------------------------------------------------------

/// A minimal API server for `kubectl apply --dry-run=client`: discovery for the kinds the
/// manifests use, 404 for every object. Stops when dropped.
pub struct DiscoveryStub {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:0"}]}"#;

fn resource(name: &str, kind: &str, namespaced: bool) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "singularName": kind.to_lowercase(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
    })
}

fn discovery(path: &str) -> Option<String> {
    let group = |name: &str| {
        serde_json::json!({
            "name": name,
            "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
            "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"},
        })
    };
    let list = |gv: &str, resources: Vec<serde_json::Value>| {
        serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
            .to_string()
    };
    match path {
        "/version" => Some(r#"{"major":"1","minor":"32","gitVersion":"v1.32.0"}"#.to_string()),
        "/api" => Some(API_VERSIONS.to_string()),
        "/apis" => Some(
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [group("apps"), group("rbac.authorization.k8s.io")]})
            .to_string(),
        ),
        "/api/v1" => Some(list(
            "v1",
            vec![
                resource("namespaces", "Namespace", false),
                resource("serviceaccounts", "ServiceAccount", true),
                resource("configmaps", "ConfigMap", true),
                resource("services", "Service", true),
            ],
        )),
        "/apis/apps/v1" => Some(list(
            "apps/v1",
            vec![
                resource("daemonsets", "DaemonSet", true),
                resource("deployments", "Deployment", true),
            ],
        )),
        "/apis/rbac.authorization.k8s.io/v1" => Some(list(
            "rbac.authorization.k8s.io/v1",
            vec![
                resource("clusterroles", "ClusterRole", false),
                resource("clusterrolebindings", "ClusterRoleBinding", false),
            ],
        )),
        _ => None,
    }
}

fn serve(mut stream: TcpStream) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let (status, body) = match discovery(path) {
        Some(body) => ("200 OK", body),
        None => (
            "404 Not Found",
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}"#
                .to_string(),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl DiscoveryStub {
    pub fn start() -> DiscoveryStub {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind the kubectl discovery stub");
        let port = listener.local_addr().expect("stub address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream);
                }
            }
        });
        DiscoveryStub {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `kubectl --server`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `kubectl apply --dry-run=client --validate=false -f FILE` against this stub; panics
    /// with kubectl's output unless it succeeds. Returns its stdout (one line per object).
    pub fn kubectl_apply_dry_run(&self, file: &Path) -> String {
        let out = Command::new("kubectl")
            .args(["apply", "--dry-run=client", "--validate=false"])
            .arg("--server")
            .arg(self.url())
            .arg("-f")
            .arg(file)
            .env("KUBECONFIG", "/dev/null")
            .output()
            .unwrap_or_else(|e| panic!("cannot start kubectl: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl apply --dry-run=client -f {} failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for DiscoveryStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(values: &str) -> Value {
        let mut m = Mapping::new();
        m.insert("Values".into(), serde_norway::from_str(values).unwrap());
        Value::Mapping(m)
    }

    #[test]
    fn trimming_and_conditionals_follow_helm() {
        let c = ctx("a: true\nb: false\nn: 3");
        let t = "x:\n  - 1\n  {{- if .Values.a }}\n  - 2\n  {{- end }}\n  {{- if .Values.b }}\n  - 3\n  {{- else }}\n  - {{ .Values.n }}\n  {{- end }}\n";
        assert_eq!(render(t, &c).unwrap(), "x:\n  - 1\n  - 2\n  - 3\n");
    }

    #[test]
    fn pipelines_render_yaml_blocks_and_quotes() {
        let c = ctx("r: {cpu: 100m}\ns: 'a\"b'\nt: \"l1\\nl2\\n\"");
        assert_eq!(
            render("r: {{- toYaml .Values.r | nindent 2 }}", &c).unwrap(),
            "r:\n  cpu: 100m"
        );
        assert_eq!(render("{{ .Values.s | quote }}", &c).unwrap(), "\"a\\\"b\"");
        assert_eq!(
            render("k: |\n  {{- .Values.t | nindent 2 }}", &c).unwrap(),
            "k: |\n  l1\n  l2\n  "
        );
        assert_eq!(render("[{{ .Values.missing }}]", &c).unwrap(), "[]");
    }

    #[test]
    fn anything_outside_the_subset_is_an_error() {
        let c = ctx("a: [1]");
        assert!(render("{{ range .Values.a }}x{{ end }}", &c).is_err());
        assert!(render("{{ .Values.a | upper }}", &c).is_err());
        assert!(render("{{ if .Values.a }}x", &c).is_err());
        assert!(render("{{ .Values.a }}", &c).is_err());
    }

    #[test]
    fn overrides_merge_into_values_key_by_key() {
        let mut base: Value = serde_norway::from_str("a: {b: 1, c: 2}\nd: [1]").unwrap();
        merge(
            &mut base,
            serde_norway::from_str("a: {c: 3}\nd: [2]").unwrap(),
        );
        assert_eq!(
            base,
            serde_norway::from_str::<Value>("a: {b: 1, c: 3}\nd: [2]").unwrap()
        );
    }
}

//! A small Chrome DevTools Protocol client: headless Chromium started with a fresh profile,
//! one page target attached (flattened session) over one WebSocket, and the few commands the
//! page tests use (navigate, evaluate, real mouse clicks, full-page screenshots).

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use mcpwarden_tests::ChildGuard;
use serde_json::{json, Value};
use tempfile::TempDir;
use tungstenite::{Message, WebSocket};

/// The Chromium binary (Debian's `chromium`, installed by `cargo xtask setup`).
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// A headless Chromium with one attached page.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    process: ChildGuard,
    // Declared last: the profile goes after the browser.
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` viewport and attaches to a blank page.
    pub fn launch(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run `cargo xtask setup` (installs chromium)"
        );
        let profile = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-chromium-")
            .tempdir()
            .expect("cannot create a Chromium profile directory");
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank");
        let mut process = ChildGuard::spawn("chromium", &mut cmd, profile.path());
        // Chromium writes the port it chose and the browser target's path to this file.
        let active = profile.path().join("DevToolsActivePort");
        let t0 = Instant::now();
        let (port, path) = loop {
            let text = std::fs::read_to_string(&active).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(p), Some(path)) = (lines.next(), lines.next()) {
                if let Ok(p) = p.trim().parse::<u16>() {
                    break (p, path.trim().to_string());
                }
            }
            if let Some(status) = process.try_wait() {
                panic!("chromium exited with {status}\n{}", process.stderr());
            }
            assert!(
                t0.elapsed() < WAIT,
                "chromium did not open its DevTools port in {WAIT:?}\n{}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket handshake: {e}"));
        let mut browser = Browser {
            ws,
            next_id: 0,
            session: String::new(),
            process,
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {attached}"))
            .to_string();
        browser.call("Page.enable", json!({}));
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("DevTools send {method}: {e}"));
        loop {
            let frame = self.ws.read().unwrap_or_else(|e| {
                panic!(
                    "DevTools read ({method}): {e}\n--- chromium stderr ---\n{}",
                    self.process.stderr()
                )
            });
            let Message::Text(text) = frame else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or a late reply
            }
            return match reply.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(reply["result"].clone()),
            };
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A command on the page; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Opens `url` and waits for the document to load.
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait_for(
            "document.readyState === 'complete'",
            &format!("{url} to load"),
        );
    }

    /// Evaluates `expr` in the page (promises awaited); `Err` on an exception or while the
    /// page navigates.
    pub fn eval(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.send(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            true,
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(ex.clone());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` until it is truthy; returns its value.
    pub fn wait_for(&mut self, expr: &str, what: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let last = match self.eval(expr) {
                Ok(v) if truthy(&v) => return v,
                Ok(v) | Err(v) => v,
            };
            if t0.elapsed() > WAIT {
                let url = self.eval("location.href").unwrap_or_default();
                let body = self
                    .eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
                    .unwrap_or_default();
                panic!(
                    "waited {WAIT:?} for {what} ({expr}); last value {last}\nat {url}\n--- page text ---\n{}",
                    body.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of the page.
    pub fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Clicks the centre of the first element matching `selector` with the mouse (the element
    /// is scrolled into view first).
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let at = self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()"
            ),
            &format!("{selector} to click"),
        );
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": at["x"], "y": at["y"], "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Types `text` into the element matching `selector` (focused, emptied first).
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        self.click(selector);
        self.eval(&format!("document.querySelector({sel}).value = ''"))
            .unwrap_or_else(|e| panic!("clear {selector}: {e}"));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// A PNG of the whole page (not only the viewport) written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let size = &m["cssContentSize"];
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot data: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

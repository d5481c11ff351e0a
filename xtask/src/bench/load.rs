//! A fast MCP peer pair for the loss and idle-session figures, so that neither Python nor
//! the SDK limits the rate: a plaintext Streamable-HTTP server answering JSON (one thread
//! per connection; `initialize` hands out a distinct `Mcp-Session-Id`, notifications get
//! 202) and keep-alive clients that run handshakes and paced `tools/call`s, on loopback; the
//! server is a child process, so the agent sees every message from both ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::procs::Guard;

/// The server, in its own process (`cargo xtask bench-load-server`, this same binary): the
/// agent reports each process's view, so client and server must be two processes.
pub struct LoadServer {
    _guard: Guard,
    pub port: u16,
}

impl LoadServer {
    pub fn start() -> Result<LoadServer> {
        let exe = std::env::current_exe().context("bench: the xtask binary's path")?;
        let mut child = Command::new(exe)
            .arg("bench-load-server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("bench: starting the load server")?;
        let stdout = child.stdout.take();
        let guard = Guard::term(child);
        let mut line = String::new();
        if let Some(out) = stdout {
            BufReader::new(out).read_line(&mut line)?;
        }
        let port = line
            .trim()
            .parse()
            .with_context(|| format!("bench: the load server said {line:?}, not its port"))?;
        Ok(LoadServer {
            _guard: guard,
            port,
        })
    }
}

/// `cargo xtask bench-load-server`: listens on a free loopback port, prints it, and serves
/// until killed.
pub fn serve_forever() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let sessions = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming().flatten() {
        let sessions = sessions.clone();
        std::thread::spawn(move || serve(conn, &sessions));
    }
    Ok(())
}

/// One HTTP message read from a stream: (head lines, body).
fn read_message(r: &mut BufReader<TcpStream>) -> Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let len = head
        .iter()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve(conn: TcpStream, sessions: &AtomicU64) {
    let _ = conn.set_nodelay(true);
    // Reads and writes through the one fd (a dup'ed fd would be a second socket to
    // whoever watches by fd).
    let mut r = BufReader::new(conn);
    while let Ok(Some((_, body))) = read_message(&mut r) {
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let answer = if msg.get("id").is_none() {
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            let (result, extra) = if msg["method"] == "initialize" {
                let n = sessions.fetch_add(1, Ordering::Relaxed);
                (
                    json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                           "serverInfo": {"name": "mcpwarden-bench-load", "version": "0.1.0"}}),
                    format!("Mcp-Session-Id: bench-{n:08}\r\n"),
                )
            } else {
                (
                    json!({"content": [{"type": "text", "text": "ok"}], "isError": false}),
                    String::new(),
                )
            };
            let body = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}).to_string();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let mut w: &TcpStream = r.get_ref();
        if w.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A keep-alive client connection.
pub struct LoadClient {
    /// The connection (reads and writes through this one fd).
    r: BufReader<TcpStream>,
    port: u16,
    session: Option<String>,
    /// JSON-RPC messages carried so far (requests, notifications and answers with a body).
    pub messages: u64,
}

impl LoadClient {
    pub fn connect(port: u16) -> Result<LoadClient> {
        let s = TcpStream::connect(("127.0.0.1", port)).context("bench: load client connect")?;
        s.set_nodelay(true)?;
        Ok(LoadClient {
            r: BufReader::new(s),
            port,
            session: None,
            messages: 0,
        })
    }

    fn post(&mut self, body: &Value) -> Result<(Vec<String>, Vec<u8>)> {
        let body = body.to_string();
        let session = self
            .session
            .as_ref()
            .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{session}Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        let mut w: &TcpStream = self.r.get_ref();
        w.write_all(req.as_bytes())?;
        self.messages += 1;
        let Some((head, body)) = read_message(&mut self.r)? else {
            bail!("bench: the load server closed the connection");
        };
        if !body.is_empty() {
            self.messages += 1;
        }
        Ok((head, body))
    }

    /// initialize (a new session id from the server) and notifications/initialized.
    pub fn handshake(&mut self) -> Result<()> {
        self.session = None;
        let (head, _) = self.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "mcpwarden-bench-load", "version": "0.1.0"}}}))?;
        self.session = header(&head, "mcp-session-id").map(str::to_string);
        if self.session.is_none() {
            bail!("bench: the load server gave no session id");
        }
        self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(())
    }

    pub fn call(&mut self, id: u64) -> Result<()> {
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": id, "b": 1}}}))?;
        Ok(())
    }
}

/// What a paced run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadResult {
    pub calls: u64,
    pub messages: u64,
    pub seconds: f64,
}

/// `conns` connections, one session each, `calls_per_s` calls per second in all, for
/// `duration` (each connection keeps its own schedule and catches up when late).
pub fn paced_calls(
    port: u16,
    conns: usize,
    calls_per_s: f64,
    duration: Duration,
) -> Result<LoadResult> {
    let started = Instant::now();
    let per_conn = calls_per_s / conns as f64;
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || -> Result<LoadResult> {
                let mut c = LoadClient::connect(port)?;
                c.handshake()?;
                let t0 = Instant::now();
                let mut calls = 0u64;
                while t0.elapsed() < duration {
                    let due = t0 + Duration::from_secs_f64(calls as f64 / per_conn);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    c.call(calls + 1)?;
                    calls += 1;
                }
                Ok(LoadResult {
                    calls,
                    messages: c.messages,
                    seconds: 0.0,
                })
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("bench: a load client thread panicked"))??;
        total.calls += r.calls;
        total.messages += r.messages;
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// `sessions` handshakes over `conns` connections, left open (returned) so the sessions do
/// not end on close; and the messages they carried.
pub fn idle_sessions(
    port: u16,
    conns: usize,
    sessions: usize,
    per_s: f64,
) -> Result<(Vec<LoadClient>, u64)> {
    // Each connection's share of the rate, on a fixed schedule (a late handshake does not
    // make the next ones wait).
    let interval = Duration::from_secs_f64(conns as f64 / per_s.max(1.0));
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let n = sessions / conns + usize::from(i < sessions % conns);
            std::thread::spawn(move || -> Result<LoadClient> {
                let mut c = LoadClient::connect(port)?;
                let start = std::time::Instant::now();
                for k in 0..n {
                    if let Some(wait) = (interval * k as u32).checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    c.handshake()?;
                }
                Ok(c)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for t in threads {
        clients.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("bench: a handshake thread panicked"))??,
        );
    }
    let messages = clients.iter().map(|c| c.messages).sum();
    Ok((clients, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_server_hands_out_distinct_sessions_and_answers_every_call() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let sessions = Arc::new(AtomicU64::new(0));
            for conn in listener.incoming().flatten() {
                let sessions = sessions.clone();
                std::thread::spawn(move || serve(conn, &sessions));
            }
        });
        let (clients, messages) = idle_sessions(port, 2, 5, 1000.0).expect("handshakes");
        // initialize + its answer + notifications/initialized, per session.
        assert_eq!(messages, 15);
        assert_eq!(clients.len(), 2);
        let r = paced_calls(port, 2, 200.0, Duration::from_millis(100)).expect("calls");
        assert!(r.calls >= 10, "{r:?}");
        // Two handshake messages with a body... plus request and answer per call.
        assert_eq!(r.messages, 2 * 3 + 2 * r.calls);
    }
}

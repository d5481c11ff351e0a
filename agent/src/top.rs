//! `mcpwarden top`: active MCP sessions and calls per second of the running local agent,
//! from its control socket (`{"cmd":"sessions"}`), in the terminal. No backend needed.
//!
//! [`View`] holds what the last two snapshots say (rates come from the difference of the
//! agent's message counter); [`draw`] renders it with ratatui, so the same code draws on the
//! terminal and on a test backend (`mcpwarden top --once` prints one frame as text).

use std::time::Instant;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

/// Sort orders, cycled with `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Calls,
    Errors,
    Started,
    Duration,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Calls => SortBy::Errors,
            SortBy::Errors => SortBy::Started,
            SortBy::Started => SortBy::Duration,
            SortBy::Duration => SortBy::Calls,
        }
    }
}

/// One row: an active session as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub session_id: String,
    pub pid: u64,
    pub comm: String,
    pub side: String,
    pub server: String,
    pub client: String,
    pub user: String,
    pub calls: u64,
    pub errors: u64,
    pub started_ns: u64,
    pub last_ns: u64,
    pub tools: String,
    pub attacks: usize,
}

impl SessionRow {
    fn from_summary(s: &Value) -> SessionRow {
        let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let list = |k: &str| {
            s[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let client = match (s["client_name"].as_str(), s["client_version"].as_str()) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.to_string(),
            _ => String::new(),
        };
        SessionRow {
            session_id: text("session_id"),
            pid: s["pid"].as_u64().unwrap_or(0),
            comm: text("comm"),
            side: text("side"),
            server: text("server"),
            client,
            user: text("user"),
            calls: s["requests"].as_u64().unwrap_or(0),
            errors: s["errors"].as_u64().unwrap_or(0),
            started_ns: s["started_ns"].as_u64().unwrap_or(0),
            last_ns: s["ended_ns"].as_u64().unwrap_or(0),
            tools: list("tools"),
            attacks: s["attacks"].as_array().map_or(0, Vec::len),
        }
    }
}

/// What the view shows.
#[derive(Debug, Clone)]
pub struct View {
    pub rows: Vec<SessionRow>,
    pub sort: SortBy,
    /// MCP messages per second over the last refresh.
    pub messages_per_s: f64,
    last: Option<(Instant, u64)>,
}

impl View {
    pub fn new(sort: SortBy) -> View {
        View {
            rows: Vec::new(),
            sort,
            messages_per_s: 0.0,
            last: None,
        }
    }

    /// Takes one answer of the agent (`{"sessions": [...], "messages": N}`).
    pub fn update(&mut self, answer: &Value, now: Instant) {
        self.rows = answer["sessions"]
            .as_array()
            .map(|a| a.iter().map(SessionRow::from_summary).collect())
            .unwrap_or_default();
        let messages = answer["messages"].as_u64().unwrap_or(0);
        if let Some((at, before)) = self.last {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                self.messages_per_s = messages.saturating_sub(before) as f64 / dt;
            }
        }
        self.last = Some((now, messages));
        self.sort_rows();
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.sort_rows();
    }

    fn sort_rows(&mut self) {
        match self.sort {
            SortBy::Calls => self.rows.sort_by_key(|r| std::cmp::Reverse(r.calls)),
            SortBy::Errors => self.rows.sort_by_key(|r| std::cmp::Reverse(r.errors)),
            SortBy::Started => self.rows.sort_by_key(|r| std::cmp::Reverse(r.started_ns)),
            SortBy::Duration => self
                .rows
                .sort_by_key(|r| std::cmp::Reverse(r.last_ns.saturating_sub(r.started_ns))),
        }
    }
}

fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, (ns / 100_000_000) % 10)
    }
}

/// Draws the view.
pub fn draw(frame: &mut Frame, view: &View) {
    let [head, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(frame.area());
    let calls: u64 = view.rows.iter().map(|r| r.calls).sum();
    let summary = Paragraph::new(Line::from(format!(
        "{} active sessions   {} calls   {:.1} messages/s   sort: {:?} (s)   quit: q",
        view.rows.len(),
        calls,
        view.messages_per_s,
        view.sort
    )))
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title("mcpwarden top"),
    );
    frame.render_widget(summary, head);
    let header = Row::new([
        "SESSION", "PID", "COMM", "SIDE", "SERVER", "CLIENT", "USER", "CALLS", "ERR", "AGE",
        "ATTACKS", "TOOLS",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = view.rows.iter().map(|r| {
        Row::new([
            r.session_id.chars().take(16).collect::<String>(),
            r.pid.to_string(),
            r.comm.clone(),
            r.side.clone(),
            r.server.clone(),
            r.client.clone(),
            r.user.clone(),
            r.calls.to_string(),
            r.errors.to_string(),
            duration(r.last_ns.saturating_sub(r.started_ns)),
            r.attacks.to_string(),
            r.tools.clone(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(22),
            Constraint::Length(30),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(header)
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title("active sessions"),
    );
    frame.render_widget(table, body);
}

/// One frame of `view` drawn on a `width`×`height` test backend, as text lines.
pub fn render_text(view: &View, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let Ok(mut terminal) = ratatui::Terminal::new(backend) else {
        return String::new();
    };
    if terminal.draw(|f| draw(f, view)).is_err() {
        return String::new();
    }
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(messages: u64) -> Value {
        json!({"ok": true, "messages": messages, "sessions": [
            {"session_id": "a1b2c3", "pid": 10, "comm": "python3", "side": "client",
             "server": "127.0.0.1:8000/mcp", "client_name": "mcp", "client_version": "1.0",
             "user": "ann", "requests": 7, "errors": 1, "started_ns": 1_000_000_000u64,
             "ended_ns": 4_500_000_000u64, "tools": ["add", "fail"], "attacks": []},
            {"session_id": "ffff", "pid": 11, "comm": "node", "side": "client",
             "server": "127.0.0.1:9000/mcp", "requests": 20, "errors": 0,
             "started_ns": 2_000_000_000u64, "ended_ns": 2_100_000_000u64, "tools": [],
             "attacks": [{"kind": "acl_violation"}]}
        ]})
    }

    #[test]
    fn the_frame_lists_sessions_sorted_with_the_message_rate() {
        let mut v = View::new(SortBy::Calls);
        let t0 = Instant::now();
        v.update(&answer(100), t0);
        v.update(&answer(150), t0 + std::time::Duration::from_secs(2));
        assert!((v.messages_per_s - 25.0).abs() < 1e-9);
        let text = render_text(&v, 160, 10);
        assert!(
            text.contains("2 active sessions   27 calls   25.0 messages/s"),
            "{text}"
        );
        let a = text.find("a1b2c3").unwrap_or(usize::MAX);
        let f = text.find("ffff").unwrap_or(0);
        assert!(f < a, "sorted by calls, descending:\n{text}");
        assert!(text.contains("mcp 1.0"), "{text}");
        assert!(text.contains("add,fail"), "{text}");
        assert!(text.contains("3.5s"), "{text}");
        v.cycle_sort();
        assert_eq!(v.sort, SortBy::Errors);
        assert_eq!(v.rows[0].session_id, "a1b2c3");
    }
}

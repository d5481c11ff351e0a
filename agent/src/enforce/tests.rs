//! The enforcer's decisions against a recording fake actuator.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use super::sock_destroy::DestroyError;
use super::*;
use crate::mcp::{Era, Side};

#[derive(Default)]
struct World {
    now: u64,
    /// Kernel hold map: (pid, id) -> start.
    held: BTreeMap<(u32, u64), u64>,
    destroyed: Vec<(String, String)>,
    signals: Vec<(u32, i32)>,
    mcp_pids: Vec<u32>,
    blocked: Vec<(u32, SocketAddr)>,
    hold_enabled: bool,
    dead: Vec<u32>,
    missing_sockets: Vec<String>,
}

#[derive(Clone, Default)]
struct Fake(Rc<RefCell<World>>);

impl Actuator for Fake {
    fn destroy(&mut self, local: &str, remote: &str) -> Result<(), DestroyError> {
        let mut w = self.0.borrow_mut();
        if w.missing_sockets.iter().any(|s| s == local) {
            return Err(DestroyError::NotFound {
                local: local
                    .parse()
                    .map_err(|_| DestroyError::BadAddress(local.into()))?,
                remote: remote
                    .parse()
                    .map_err(|_| DestroyError::BadAddress(remote.into()))?,
            });
        }
        w.destroyed.push((local.into(), remote.into()));
        Ok(())
    }
    fn remove_hold(&mut self, pid: u32, hold_id: u64) -> bool {
        self.0.borrow_mut().held.remove(&(pid, hold_id)).is_some()
    }
    fn has_hold(&self, pid: u32, hold_id: u64) -> bool {
        self.0.borrow().held.contains_key(&(pid, hold_id))
    }
    fn holds_of(&self, pid: u32) -> usize {
        self.0.borrow().held.keys().filter(|k| k.0 == pid).count()
    }
    fn holds(&self) -> Vec<(u32, u64, u64)> {
        self.0
            .borrow()
            .held
            .iter()
            .map(|(k, t)| (k.0, k.1, *t))
            .collect()
    }
    fn signal(&mut self, pid: u32, sig: i32) -> std::io::Result<()> {
        let mut w = self.0.borrow_mut();
        if w.dead.contains(&pid) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        w.signals.push((pid, sig));
        Ok(())
    }
    fn add_mcp_pid(&mut self, pid: u32) -> bool {
        self.0.borrow_mut().mcp_pids.push(pid);
        true
    }
    fn set_hold_enabled(&mut self, on: bool) -> bool {
        self.0.borrow_mut().hold_enabled = on;
        true
    }
    fn block(&mut self, pid: u32, dest: SocketAddr) -> bool {
        self.0.borrow_mut().blocked.push((pid, dest));
        true
    }
    fn now_ns(&self) -> u64 {
        self.0.borrow().now
    }
    fn wait_stopped(&mut self, _pid: u32) -> bool {
        true
    }
}

const PID: u32 = 4242;
const LOCAL: &str = "127.0.0.1:50000";
const REMOTE: &str = "127.0.0.1:8443";

fn verdict(action: Action, ts_ns: u64) -> VerdictRecord {
    let enforcement = match action {
        Action::Allow => Enforcement::None,
        Action::Audit => Enforcement::AuditOnly,
        Action::Deny | Action::Approve => Enforcement::Reset,
    };
    VerdictRecord {
        ts_ns,
        session_id: Some("s1".into()),
        pid: PID,
        comm: "python3".into(),
        side: Side::Client,
        local: LOCAL.into(),
        remote: REMOTE.into(),
        conn_id: "4242:tls:1".into(),
        server: "127.0.0.1:8443/mcp".into(),
        era: Era::Handshake,
        id: None,
        method: "tools/call".into(),
        name: Some("explode".into()),
        user: Some("alice".into()),
        role: None,
        action,
        rule_id: Some("r1".into()),
        reasons: Vec::new(),
        enforcement,
        hold_id: None,
        decision_ns: 1000,
        enforced_after_ns: None,
        request: Some(
            serde_json::json!({"method":"tools/call","params":{"name":"explode","arguments":{"x":1}}}),
        ),
        process: Default::default(),
        fail_closed: false,
        approve_timeout_ms: 120_000,
        block_connect: false,
        peer_pid: None,
    }
}

fn chunk(hold_id: u64, ts_ns: u64) -> HeldChunk {
    HeldChunk {
        hold_id,
        pid: PID,
        tid: PID,
        ts_ns,
        pos: 100,
        len: 50,
        syscall_len: 50,
        truncated: false,
        sock_fd: None,
    }
}

fn no_hints(_: &VerdictRecord) -> VerdictHints {
    VerdictHints::default()
}

fn setup(mode: EnforceMode) -> (Fake, Enforcer<Fake>) {
    let f = Fake::default();
    f.0.borrow_mut().now = 1_000_000;
    let e = Enforcer::new(mode, f.clone());
    (f, e)
}

fn only_verdict(records: &[Record]) -> &VerdictRecord {
    match records {
        [Record::Verdict(v)] => v,
        other => panic!("expected one verdict, got {other:?}"),
    }
}

#[test]
fn monitor_mode_never_acts() {
    let (f, mut e) = setup(EnforceMode::Monitor);
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 10))];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::MonitorOnly);
    assert!(f.0.borrow().destroyed.is_empty());
    assert!(!f.0.borrow().hold_enabled);
}

#[test]
fn reset_mode_destroys_the_socket_and_records_the_latency() {
    let (f, mut e) = setup(EnforceMode::Reset);
    let mut recs = vec![
        Record::Verdict(verdict(Action::Allow, 5)),
        Record::Verdict(verdict(Action::Deny, 400_000)),
    ];
    e.after_event(None, &mut recs, 1, &no_hints);
    let Record::Verdict(v) = &recs[1] else {
        panic!("verdict expected")
    };
    assert_eq!(v.enforcement, Enforcement::Reset);
    assert_eq!(v.enforced_after_ns, Some(600_000));
    assert_eq!(
        f.0.borrow().destroyed,
        vec![(LOCAL.to_string(), REMOTE.to_string())]
    );
    let s = e.stats();
    assert_eq!((s.resets, s.verdicts), (1, 1));
    assert_eq!(s.reset_latency_p50_ns, Some(600_000));
}

#[test]
fn a_reset_that_finds_no_socket_is_reported() {
    let (f, mut e) = setup(EnforceMode::Reset);
    f.0.borrow_mut().missing_sockets.push(LOCAL.into());
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 10))];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::ResetFailed);
    let mut v = verdict(Action::Deny, 10);
    v.local.clear();
    let mut recs = vec![Record::Verdict(v)];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::ResetFailed);
    let s = e.stats();
    assert_eq!((s.reset_failed, s.reset_no_socket), (2, 1));
}

#[test]
fn approve_without_a_hold_fails_closed() {
    let (f, mut e) = setup(EnforceMode::Reset);
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 10))];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::Reset);
    assert_eq!(f.0.borrow().destroyed.len(), 1);
    assert_eq!(e.stats().approvals_fail_closed, 1);
}

#[test]
fn a_held_deny_is_reset_then_released() {
    let (f, mut e) = setup(EnforceMode::Hold);
    assert!(f.0.borrow().hold_enabled);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    let v = only_verdict(&recs);
    assert_eq!(v.enforcement, Enforcement::HeldThenReset);
    assert_eq!(v.hold_id, Some(7));
    let w = f.0.borrow();
    assert_eq!(w.destroyed.len(), 1);
    assert!(w.held.is_empty());
    assert_eq!(w.signals, vec![(PID, libc::SIGCONT)]);
}

#[test]
fn a_held_write_without_a_verdict_is_released_once_read_whole() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    let mut first = chunk(7, 900_000);
    first.len = 20; // 20 of 50 bytes
    let mut recs = Vec::new();
    e.after_event(Some(first), &mut recs, 0, &no_hints);
    assert!(
        f.0.borrow().signals.is_empty(),
        "released before the whole write was read"
    );
    let mut rest = chunk(7, 900_000);
    rest.pos = 120;
    rest.len = 30;
    e.after_event(Some(rest), &mut recs, 0, &no_hints);
    assert_eq!(f.0.borrow().signals, vec![(PID, libc::SIGCONT)]);
    assert!(f.0.borrow().destroyed.is_empty());
}

#[test]
fn two_holds_of_one_process_resume_it_only_when_both_are_released() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    f.0.borrow_mut().held.insert((PID, 9), 900_001);
    let mut recs = vec![Record::Verdict(verdict(Action::Allow, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    assert!(
        f.0.borrow().signals.is_empty(),
        "resumed while hold 9 is outstanding"
    );
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 900_001))];
    e.after_event(Some(chunk(9, 900_001)), &mut recs, 0, &no_hints);
    assert_eq!(f.0.borrow().signals, vec![(PID, libc::SIGCONT)]);
    assert_eq!(f.0.borrow().destroyed.len(), 1);
}

#[test]
fn a_hold_without_decision_times_out_open() {
    let (f, mut e) = setup(EnforceMode::Hold);
    e.set_hold_timeout_ms(50);
    f.0.borrow_mut().held.insert((PID, 7), 1_000_000);
    let mut first = chunk(7, 1_000_000);
    first.len = 10;
    let mut recs = Vec::new();
    e.after_event(Some(first), &mut recs, 0, &no_hints);
    assert_eq!(e.next_deadline_ms(), Some(50));
    f.0.borrow_mut().now = 1_000_000 + 50_000_000;
    e.on_tick(&mut recs);
    assert_eq!(f.0.borrow().signals, vec![(PID, libc::SIGCONT)]);
    assert_eq!(e.stats().hold_timeouts, 1);
}

#[test]
fn a_verdict_after_the_timeout_is_marked_fail_open_and_still_resets() {
    let (f, mut e) = setup(EnforceMode::Hold);
    e.set_hold_timeout_ms(50);
    f.0.borrow_mut().held.insert((PID, 7), 1_000_000);
    let mut first = chunk(7, 1_000_000);
    first.len = 10;
    let mut recs = Vec::new();
    e.after_event(Some(first), &mut recs, 0, &no_hints);
    f.0.borrow_mut().now = 1_000_000 + 60_000_000;
    e.on_tick(&mut recs);
    // The rest of the write arrives late with its verdict: the hold is gone.
    let mut rest = chunk(7, 1_000_000);
    rest.pos = 110;
    rest.len = 40;
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 1_000_500))];
    let closed = |_: &VerdictRecord| VerdictHints {
        fail_closed: true,
        ..VerdictHints::default()
    };
    e.after_event(Some(rest), &mut recs, 0, &closed);
    assert_eq!(
        only_verdict(&recs).enforcement,
        Enforcement::FailOpenTimeout
    );
    assert_eq!(f.0.borrow().destroyed.len(), 1);
    let s = e.stats();
    assert_eq!((s.hold_timeouts, s.hold_fail_closed_timeouts), (1, 1));
    // Only once: the next deny of the process is a plain reset.
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 2_000_000))];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::Reset);
}

#[test]
fn approval_waits_for_a_person_then_releases() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    assert!(recs.is_empty(), "the verdict waits for the decision");
    assert!(f.0.borrow().signals.is_empty());
    let p = e.pending();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].id, 7);
    assert_eq!(p[0].tool.as_deref(), Some("explode"));
    assert_eq!(p[0].arguments, Some(serde_json::json!({"x":1})));
    assert_eq!(p[0].user.as_deref(), Some("alice"));
    assert_eq!(e.approve(8, &mut recs), Err(ControlError::UnknownId(8)));
    assert_eq!(e.approve(7, &mut recs), Ok(()));
    assert_eq!(
        only_verdict(&recs).enforcement,
        Enforcement::HeldThenReleased
    );
    assert_eq!(f.0.borrow().signals, vec![(PID, libc::SIGCONT)]);
    assert!(f.0.borrow().destroyed.is_empty());
    assert!(e.pending().is_empty());
}

#[test]
fn rejection_and_approval_timeout_reset() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    f.0.borrow_mut().held.insert((PID + 1, 8), 900_000);
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    assert_eq!(e.reject(7, &mut recs), Ok(()));
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::HeldThenReset);
    recs.clear();
    let mut v = verdict(Action::Approve, 900_000);
    v.pid = PID + 1;
    let mut c = chunk(8, 900_000);
    c.pid = PID + 1;
    let mut recs = vec![Record::Verdict(v)];
    let short = |_: &VerdictRecord| VerdictHints {
        approve_timeout_ms: 5,
        ..VerdictHints::default()
    };
    e.after_event(Some(c), &mut recs, 0, &short);
    assert!(recs.is_empty());
    f.0.borrow_mut().now += 5_000_000;
    e.on_tick(&mut recs);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::HeldThenReset);
    assert_eq!(e.stats().approval_timeouts, 1);
    assert_eq!(f.0.borrow().destroyed.len(), 2);
}

#[test]
fn participants_are_learned_from_client_requests_in_hold_mode() {
    use crate::mcp::{Flow, Kind, MessageRecord, Transport};
    let (f, mut e) = setup(EnforceMode::Hold);
    let m = MessageRecord {
        ts_ns: 1,
        pid: 77,
        comm: "python3".into(),
        side: Side::Client,
        local: LOCAL.into(),
        remote: REMOTE.into(),
        conn_id: "c".into(),
        http_method: "POST".into(),
        http_path: "/mcp".into(),
        http_status: None,
        session_id: None,
        era: Era::Handshake,
        direction: Flow::ClientToServer,
        kind: Kind::Request,
        id: None,
        method: Some("initialize".into()),
        name: None,
        latency_ns: None,
        error_code: None,
        error_name: None,
        error_message: None,
        tool_error: false,
        progress_token: None,
        related_id: None,
        cancelled: false,
        mcp_protocol_version: None,
        batch: false,
        transport: Transport::Json,
        result_type: None,
        input_requests: None,
        input_responses: None,
        call_id: None,
        round: None,
        subscription_id: None,
        supported_versions: None,
        required_capabilities: None,
        ttl_ms: None,
        cache_scope: None,
        verification: Vec::new(),
        params: None,
        result: None,
        error_data: None,
        truncated: false,
        payload_bytes: None,
        traceparent: None,
        headers: None,
        process: Default::default(),
        peer_pid: None,
        peer_comm: None,
    };
    let mut server_side = m.clone();
    server_side.pid = 78;
    server_side.side = Side::Server;
    let mut recs = vec![
        Record::Message(m.clone()),
        Record::Message(server_side),
        Record::Message(m),
    ];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(f.0.borrow().mcp_pids, vec![77]);
    // The libc probes are due, once.
    assert_eq!(e.take_new_participants(), vec![77]);
    assert!(e.take_new_participants().is_empty());
}

#[test]
fn block_connect_blocks_the_server_address_of_a_client() {
    let (f, mut e) = setup(EnforceMode::Reset);
    let mut recs = vec![Record::Verdict(verdict(Action::Deny, 10))];
    let block = |_: &VerdictRecord| VerdictHints {
        block_connect: true,
        ..VerdictHints::default()
    };
    e.after_event(None, &mut recs, 0, &block);
    assert_eq!(
        f.0.borrow().blocked,
        vec![(
            PID,
            REMOTE
                .parse::<SocketAddr>()
                .unwrap_or_else(|_| unreachable!())
        )]
    );
}

#[test]
fn shutdown_resumes_everything_and_resets_waiting_approvals() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    f.0.borrow_mut().held.insert((PID + 5, 3), 900_000); // an orphan
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    e.shutdown(&mut recs);
    assert_eq!(only_verdict(&recs).enforcement, Enforcement::HeldThenReset);
    let w = f.0.borrow();
    assert!(w.held.is_empty());
    assert!(!w.hold_enabled);
    assert!(w.signals.contains(&(PID, libc::SIGCONT)));
    assert!(w.signals.contains(&(PID + 5, libc::SIGCONT)));
}

#[test]
fn a_process_that_died_while_held_is_cleaned_up() {
    let (f, mut e) = setup(EnforceMode::Hold);
    f.0.borrow_mut().held.insert((PID, 7), 900_000);
    f.0.borrow_mut().dead.push(PID);
    let mut recs = vec![Record::Verdict(verdict(Action::Allow, 900_000))];
    e.after_event(Some(chunk(7, 900_000)), &mut recs, 0, &no_hints);
    assert!(f.0.borrow().held.is_empty());
    assert_eq!(e.stats().holds_died, 1);
}

#[test]
fn a_servers_view_of_a_call_its_local_client_holds_for_approval_is_not_reset() {
    let (f, mut e) = setup(EnforceMode::Hold);
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 10))];
    let peer = |_: &VerdictRecord| VerdictHints {
        decided_by_peer: true,
        ..VerdictHints::default()
    };
    e.after_event(None, &mut recs, 0, &peer);
    assert!(f.0.borrow().destroyed.is_empty());
    assert!(matches!(&recs[0], Record::Verdict(v) if v.enforcement == Enforcement::None));
    // Without a local client holding it, an approve that cannot wait is reset.
    let mut recs = vec![Record::Verdict(verdict(Action::Approve, 20))];
    e.after_event(None, &mut recs, 0, &no_hints);
    assert_eq!(f.0.borrow().destroyed.len(), 1);
}

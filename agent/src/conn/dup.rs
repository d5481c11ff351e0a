//! One socket behind two fds of one process (`dup`, `dup2`, Rust's `try_clone`): the kernel
//! follows a stream per (process, fd), so a process that reads a connection through one fd
//! and writes it through a duplicate gives two streams, each with half the conversation.
//! They are joined here: the duplicate's open names the same 4-tuple as an open connection of
//! the same process, and its bytes then feed that connection, each direction continuing at
//! the original's position. A direction written through both fds cannot be ordered (each fd
//! counts its own positions): the second fd's bytes in it are dropped and counted.

use super::{stream, Conn, ConnTable};
use crate::capture::events::Direction;
use crate::capture::ConnIdent;

/// Which fd's bytes a joined connection's direction takes, and where they start.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DirOwners {
    egress: Option<(ConnIdent, u64)>,
    ingress: Option<(ConnIdent, u64)>,
}

impl DirOwners {
    fn slot(&mut self, d: Direction) -> &mut Option<(ConnIdent, u64)> {
        match d {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }
}

/// Duplicate fd's stream → the connection it joined.
#[derive(Debug, Default)]
pub(super) struct Duplicates {
    joined: super::IdMap<ConnIdent>,
}

impl Duplicates {
    pub(super) fn is_joined(&self, conn: &ConnIdent) -> bool {
        self.joined.contains_key(conn)
    }
}

impl ConnTable {
    /// `conn` opens with the 4-tuple (`local`, `remote`): if an open plaintext connection of
    /// the same process has it, `conn` is a duplicate fd of that socket and joins it.
    pub(super) fn join_duplicate(&mut self, conn: ConnIdent, local: &str, remote: &str) -> bool {
        if self.dups.is_joined(&conn) {
            return true;
        }
        if conn.is_tls() || local.is_empty() || remote.is_empty() {
            return false;
        }
        let Some((orig, _)) = self.by_tuple(local, remote) else {
            return false;
        };
        let same_socket = orig != conn && orig.pid == conn.pid && !orig.is_tls();
        if !same_socket {
            return false;
        }
        if self.dups.joined.len() >= self.max_conns {
            let conns = &self.conns;
            self.dups.joined.retain(|_, o| conns.contains_key(o));
        }
        self.dups.joined.insert(conn, orig);
        self.stats.dup_fds_joined += 1;
        true
    }

    /// Where data of `conn` at `pos` belongs: (connection, position), or `None` when it is a
    /// direction another fd of the same socket already carries (counted).
    pub(super) fn route(
        &mut self,
        conn: ConnIdent,
        d: Direction,
        pos: u64,
    ) -> Option<(ConnIdent, u64)> {
        let Some(&orig) = self.dups.joined.get(&conn) else {
            let Some(c) = self.conns.get_mut(&conn) else {
                return Some((conn, pos));
            };
            return match *c.dup_owners.slot(d) {
                Some((owner, _)) if owner != conn => {
                    self.stats.dup_stream_conflicts += 1;
                    None
                }
                _ => Some((conn, pos)),
            };
        };
        let Some(c) = self.conns.get_mut(&orig) else {
            // The connection it joined is gone: the duplicate is a stream of its own.
            self.dups.joined.remove(&conn);
            return Some((conn, pos));
        };
        let base = match *c.dup_owners.slot(d) {
            Some((owner, base)) if owner == conn => base,
            Some(_) => {
                self.stats.dup_stream_conflicts += 1;
                return None;
            }
            None => {
                let base = start_of(c, d);
                *c.dup_owners.slot(d) = Some((conn, base));
                base
            }
        };
        Some((orig, base + pos))
    }

    /// `conn` closed: true when it was a joined duplicate (the connection it joined goes on).
    /// A connection that closes takes its duplicates' entries with it.
    pub(super) fn close_duplicate(&mut self, conn: ConnIdent) -> bool {
        if self.dups.joined.remove(&conn).is_some() {
            return true;
        }
        self.dups.joined.retain(|_, o| *o != conn);
        false
    }
}

/// Where the duplicate's first byte in direction `d` goes: after what the original carried.
fn start_of(c: &mut Conn, d: Direction) -> u64 {
    stream(c, d).next_pos.unwrap_or(0)
}

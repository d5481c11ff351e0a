//! The agent's handle on the kernel's enforcement state: the runtime switches, the MCP
//! participant set, the outstanding holds, and the connect-time block list (maps taken out
//! of the loaded object, so they outlive borrows of it), plus the cgroup connect programs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::{links::CgroupAttachMode, CgroupSockAddr};
use aya::Ebpf;
use mcpwarden_common::conn::NO_FD;
use mcpwarden_common::enforce::{
    BlockKey, HoldEntry, HoldKey, CFG_BLOCK_ENABLED, CFG_HOLD_ENABLED,
};
use thiserror::Error;

use super::CaptureError;

/// A failed map operation on the enforcement maps.
#[derive(Debug, Error)]
#[error("enforcement map {map}: {source}")]
pub struct MapOpError {
    pub map: &'static str,
    #[source]
    pub source: Box<aya::maps::MapError>,
}

fn op(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> MapOpError {
    move |e| MapOpError {
        map,
        source: Box::new(e),
    }
}

/// The enforcement maps of the loaded object.
pub struct KernelEnforce {
    config: Array<MapData, u32>,
    mcp_pids: HashMap<MapData, u32, u8>,
    held: HashMap<MapData, HoldKey, HoldEntry>,
    blocked: HashMap<MapData, BlockKey, u8>,
    send_tie: HashMap<MapData, u64, u32>,
    /// The cgroup connect programs are attached (connect-time block available).
    pub connect_block: bool,
}

pub(crate) fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<T, CaptureError> {
    T::try_from(ebpf.take_map(map).ok_or(CaptureError::MissingMap { map })?).map_err(|source| {
        CaptureError::Map {
            map,
            source: Box::new(source),
        }
    })
}

/// The cgroup v2 mount point, from /proc/mounts (`/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// The connect-time block programs.
pub const PROGRAMS: &[&str] = &["connect4_block", "connect6_block"];

/// Loads and attaches `connect4_block`/`connect6_block` at the cgroup v2 root.
fn attach_connect(ebpf: &mut Ebpf) -> Result<(), String> {
    let root = cgroup2_mount().ok_or("no cgroup2 mount in /proc/mounts")?;
    let dir = std::fs::File::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    for name in PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or(format!("program {name} missing"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| format!("loading {name}: {e}"))?;
        }
        // Through a BPF link (kernel >= 5.7) attachments of several programs coexist without
        // flags (the kernel refuses BPF_F_ALLOW_MULTI on link_create).
        prog.attach(&dir, CgroupAttachMode::Single).map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            format!("attaching {name} at {}: {e} {cause}", root.display())
        })?;
    }
    Ok(())
}

impl KernelEnforce {
    /// Takes the maps out of the object and tries the connect programs (a failure is
    /// logged and leaves `connect_block` false: the documented fallback is a reset on the
    /// first request).
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, CaptureError> {
        let connect_block = match attach_connect(ebpf) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("connect-time block unavailable (falling back to reset on the first request): {e}");
                false
            }
        };
        Ok(Self {
            config: take(ebpf, "ENFORCE_CONFIG")?,
            mcp_pids: take(ebpf, "MCP_PIDS")?,
            held: take(ebpf, "HELD")?,
            blocked: take(ebpf, "BLOCKED")?,
            send_tie: take(ebpf, "SEND_TIE")?,
            connect_block,
        })
    }

    /// Hold mode on or off (the write probes' prefilter does nothing while off).
    pub fn set_hold_enabled(&mut self, on: bool) -> Result<(), MapOpError> {
        self.config
            .set(CFG_HOLD_ENABLED, u32::from(on), 0)
            .map_err(op("ENFORCE_CONFIG"))
    }

    /// Marks a process as an MCP participant (its writes are scanned in hold mode).
    pub fn add_mcp_pid(&mut self, pid: u32) -> Result<(), MapOpError> {
        self.mcp_pids.insert(pid, 1, 0).map_err(op("MCP_PIDS"))
    }

    /// Removes one hold; false when it was not there.
    pub fn remove_hold(&mut self, pid: u32, hold_id: u64) -> bool {
        self.held.remove(&hold_key(pid, hold_id)).is_ok()
    }

    /// Is this hold outstanding?
    pub fn has_hold(&self, pid: u32, hold_id: u64) -> bool {
        self.held.get(&hold_key(pid, hold_id), 0).is_ok()
    }

    /// Every outstanding hold (pid, hold id, entry).
    pub fn holds(&self) -> Vec<(u32, u64, HoldEntry)> {
        self.held
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (k.tgid, k.hold_id, v))
            .collect()
    }

    /// The thread whose write began a hold.
    pub fn hold_tid(&self, pid: u32, hold_id: u64) -> Option<u32> {
        self.held
            .get(&hold_key(pid, hold_id), 0)
            .ok()
            .map(|e| e.tid)
    }

    /// Asks the kernel to stop thread `tid` of `pid` at its next libc send on a socket that
    /// is not plaintext HTTP, and to record that socket's fd (`SEND_TIE`).
    pub fn arm_send_tie(&mut self, pid: u32, tid: u32) -> Result<(), MapOpError> {
        self.send_tie
            .insert(send_tie_key(pid, tid), NO_FD, 0)
            .map_err(op("SEND_TIE"))
    }

    /// The fd the armed thread's send named, once it did.
    pub fn send_tie_fd(&self, pid: u32, tid: u32) -> Option<u32> {
        self.send_tie
            .get(&send_tie_key(pid, tid), 0)
            .ok()
            .filter(|fd| *fd != NO_FD)
    }

    /// Disarms a send tie.
    pub fn clear_send_tie(&mut self, pid: u32, tid: u32) {
        let _ = self.send_tie.remove(&send_tie_key(pid, tid));
    }

    /// Outstanding holds of one process.
    pub fn holds_of(&self, pid: u32) -> usize {
        self.held
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.tgid == pid)
            .count()
    }

    /// Refuses new connections from `pid` to `dest` (and turns the block list on).
    pub fn block(&mut self, pid: u32, dest: SocketAddr) -> Result<(), MapOpError> {
        self.blocked
            .insert(block_key(pid, dest), 1, 0)
            .map_err(op("BLOCKED"))?;
        self.config
            .set(CFG_BLOCK_ENABLED, 1, 0)
            .map_err(op("ENFORCE_CONFIG"))
    }

    /// Lifts a block.
    pub fn unblock(&mut self, pid: u32, dest: SocketAddr) -> bool {
        self.blocked.remove(&block_key(pid, dest)).is_ok()
    }
}

/// The hold map's key of hold `hold_id` of process `pid`.
fn hold_key(pid: u32, hold_id: u64) -> HoldKey {
    HoldKey {
        tgid: pid,
        _pad: 0,
        hold_id,
    }
}

/// pid_tgid of a thread, the key of the kernel's per-thread maps.
fn send_tie_key(pid: u32, tid: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(tid)
}

/// The block-list key of (pid, destination). IPv4-mapped IPv6 destinations are kept as
/// IPv6: the connect6 program sees them that way.
pub fn block_key(pid: u32, dest: SocketAddr) -> BlockKey {
    let mut addr = [0u8; 16];
    let family = match dest.ip() {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            2
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            10
        }
    };
    BlockKey {
        tgid: pid,
        family,
        port: dest.port(),
        addr,
    }
}

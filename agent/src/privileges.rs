//! Least privilege at run time: once every program is attached, the agent keeps only the
//! capabilities its running features need and drops the rest from every set (effective,
//! permitted, inheritable, ambient and the bounding set), so no later code path — nor any
//! process it could start — regains them.
//!
//! | capability | kept because |
//! |---|---|
//! | `CAP_BPF` | map reads and updates (counters, connect-block entries), new uprobes for TLS libraries found later |
//! | `CAP_PERFMON` | attaching those uprobes (perf events) |
//! | `CAP_NET_ADMIN` | resetting connections (netlink `SOCK_DESTROY`) |
//! | `CAP_SYS_PTRACE` | reading `/proc/PID/{root,exe,maps}` of other users' processes (TLS discovery, process identity) |
//! | `CAP_DAC_READ_SEARCH` | reading libraries and executables through `/proc/PID/root` whatever their directories' modes |
//! | `CAP_KILL` | hold mode: stopping and resuming a client (`SIGSTOP`/`SIGCONT`) of another user |
//! | `CAP_SYS_NICE` | enforcing (`reset`, `hold`) with a negative `--enforce-nice`: the event loop raises its priority after the other threads start |
//! | `CAP_SYS_ADMIN` | attaching uprobes while running (TLS libraries and executables found after start, the plaintext hold's per-process probes): `perf_event_open` for them is refused on this kernel with `CAP_PERFMON` alone |
//!
//! Everything else (`CAP_SYS_ADMIN` when not needed, `CAP_SYS_MODULE`, `CAP_SYS_RESOURCE`,
//! `CAP_SETUID`, `CAP_CHOWN`, `CAP_NET_RAW`, …) is dropped.

use caps::{CapSet, Capability, CapsHashSet};
use thiserror::Error;

/// Why capabilities could not be dropped.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("cannot read the {set:?} capability set: {source}")]
    Read {
        set: CapSet,
        source: caps::errors::CapsError,
    },
    #[error("cannot drop {cap} from the {set:?} set: {source}")]
    Drop {
        cap: Capability,
        set: CapSet,
        source: caps::errors::CapsError,
    },
}

/// The capabilities kept after attach (see the module docs).
pub fn kept(permitted: &CapsHashSet) -> CapsHashSet {
    let mut keep: CapsHashSet = [
        Capability::CAP_BPF,
        Capability::CAP_PERFMON,
        Capability::CAP_NET_ADMIN,
        Capability::CAP_SYS_PTRACE,
        Capability::CAP_DAC_READ_SEARCH,
        Capability::CAP_KILL,
    ]
    .into_iter()
    .filter(|c| permitted.contains(c))
    .collect();
    // Uprobes are attached while running (TLS libraries and executables found after start,
    // the plaintext hold's per-process probes), and `perf_event_open` for them is refused
    // here with CAP_PERFMON alone.
    if permitted.contains(&Capability::CAP_SYS_ADMIN) {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    keep
}

/// What [`drop_after_attach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
}

fn names(set: &CapsHashSet) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// Drops every capability but [`kept`] ones (and `also`, when permitted) from all sets of the
/// calling thread. Call it before any other thread is started (capabilities are per thread;
/// threads started later inherit the reduced sets).
pub fn drop_after_attach(also: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|source| PrivilegeError::Read {
        set: CapSet::Permitted,
        source,
    })?;
    let mut keep = kept(&permitted);
    keep.extend(also.iter().filter(|c| permitted.contains(c)));
    let dropped: CapsHashSet = permitted.difference(&keep).copied().collect();
    // The bounding set first (needs CAP_SETPCAP, still effective now).
    for cap in caps::runtime::thread_all_supported() {
        if keep.contains(&cap) {
            continue;
        }
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| PrivilegeError::Drop {
                cap,
                set: CapSet::Bounding,
                source,
            })?;
        }
    }
    for set in [CapSet::Ambient, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|source| PrivilegeError::Drop {
            cap: Capability::CAP_SETPCAP,
            set,
            source,
        })?;
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &keep).map_err(|source| PrivilegeError::Drop {
            cap: Capability::CAP_SETPCAP,
            set,
            source,
        })?;
    }
    Ok(Dropped {
        kept: names(&keep),
        dropped: names(&dropped),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_capabilities_are_kept() {
        let all: CapsHashSet = caps::all();
        let keep = kept(&all);
        for c in [
            Capability::CAP_BPF,
            Capability::CAP_PERFMON,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_DAC_READ_SEARCH,
            Capability::CAP_KILL,
        ] {
            assert!(keep.contains(&c), "{c}");
        }
        for c in [
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SETUID,
            Capability::CAP_SYS_RESOURCE,
            Capability::CAP_NET_RAW,
            Capability::CAP_CHOWN,
        ] {
            assert!(!keep.contains(&c), "{c}");
        }
        // Nothing is kept that was not permitted.
        let few: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
        let keep_few = kept(&few);
        assert!(keep_few.is_subset(&few));
    }

    #[test]
    fn sys_admin_stays_for_attaching_uprobes_while_running() {
        let with: CapsHashSet = [
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_BPF,
            Capability::CAP_PERFMON,
        ]
        .into_iter()
        .collect();
        assert!(kept(&with).contains(&Capability::CAP_SYS_ADMIN));
        let without: CapsHashSet = [Capability::CAP_BPF].into_iter().collect();
        assert!(!kept(&without).contains(&Capability::CAP_SYS_ADMIN));
    }
}

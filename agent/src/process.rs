//! Who a process is: executable, uid, cgroup path and container id, read from `/proc` and
//! cached per pid (bounded; an entry is re-read when the process's `comm` changes, i.e.
//! after an exec or pid reuse).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::policy::ProcessFacts;

/// Who a process is, as written into records (every field only when known).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessIdentity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Kubernetes: the pod (the container's `HOSTNAME` when it runs in a pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Kubernetes: the pod's namespace (its service-account mount).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
}

/// Processes remembered at once; beyond it the cache is cleared (counted).
const MAX_PROCESSES: usize = 8192;

/// Reads and caches [`ProcessFacts`].
#[derive(Debug)]
pub struct ProcessTable {
    proc_root: PathBuf,
    cache: HashMap<u32, (ProcessFacts, ProcessIdentity)>,
    /// Times the cache was cleared to stay bounded.
    pub resets: u64,
}

impl Default for ProcessTable {
    fn default() -> Self {
        ProcessTable::new("/proc")
    }
}

impl ProcessTable {
    /// A table reading the given `/proc` (tests point it elsewhere).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        ProcessTable {
            proc_root: proc_root.into(),
            cache: HashMap::new(),
            resets: 0,
        }
    }

    /// What is known of `pid` (whose command name the kernel reported as `comm`).
    pub fn get(&mut self, pid: u32, comm: &str) -> &ProcessFacts {
        &self.entry(pid, comm).0
    }

    /// What records say about `pid`.
    pub fn identity(&mut self, pid: u32, comm: &str) -> &ProcessIdentity {
        &self.entry(pid, comm).1
    }

    fn entry(&mut self, pid: u32, comm: &str) -> &(ProcessFacts, ProcessIdentity) {
        let stale = self.cache.get(&pid).is_none_or(|f| f.0.comm != comm);
        if stale {
            if self.cache.len() >= MAX_PROCESSES {
                self.cache.clear();
                self.resets += 1;
            }
            let facts = self.read(pid, comm);
            let (pod_name, pod_namespace) = self.pod(pid);
            let identity = ProcessIdentity {
                exe: facts.exe.clone(),
                uid: facts.uid,
                cgroup: facts.cgroup.clone(),
                container_id: facts.container_id.clone(),
                pod_name,
                pod_namespace,
            };
            self.cache.insert(pid, (facts, identity));
        }
        self.cache.entry(pid).or_default()
    }

    /// Pod name and namespace of a process running in a Kubernetes pod: its `HOSTNAME`
    /// (the pod name, unless the pod sets another) when `KUBERNETES_SERVICE_HOST` is in its
    /// environment, and the namespace of its service-account mount.
    fn pod(&self, pid: u32) -> (Option<String>, Option<String>) {
        let dir = self.proc_root.join(pid.to_string());
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            return (None, None);
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let get = |name: &str| {
            vars.iter().find_map(|v| {
                v.strip_prefix(name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
                    .map(|val| String::from_utf8_lossy(val).into_owned())
            })
        };
        if get("KUBERNETES_SERVICE_HOST").is_none() {
            return (None, None);
        }
        let namespace = std::fs::read_to_string(
            dir.join("root/var/run/secrets/kubernetes.io/serviceaccount/namespace"),
        )
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
        (get("HOSTNAME"), namespace)
    }

    /// Forgets `pid` (it exited).
    pub fn forget(&mut self, pid: u32) {
        self.cache.remove(&pid);
    }

    fn read(&self, pid: u32, comm: &str) -> ProcessFacts {
        let dir = self.proc_root.join(pid.to_string());
        let exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| parse_uid(&s));
        let cgroup = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|s| cgroup_path(&s));
        let container_id = cgroup.as_deref().and_then(container_id);
        ProcessFacts {
            pid,
            comm: comm.to_string(),
            exe,
            uid,
            cgroup,
            container_id,
        }
    }
}

/// The real uid from `/proc/PID/status` (`Uid:\treal\teffective\t…`).
fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The process's cgroup path from `/proc/PID/cgroup`: the unified (v2) entry when it names
/// more than the root, else the systemd v1 hierarchy's, else the first non-root v1 path.
pub fn cgroup_path(text: &str) -> Option<String> {
    let mut v2 = None;
    let mut systemd = None;
    let mut first = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if path.is_empty() || path == "/" {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers == "name=systemd" {
            systemd = Some(path.to_string());
        } else if first.is_none() {
            first = Some(path.to_string());
        }
    }
    v2.or(systemd).or(first)
}

/// A container id in a cgroup path: the 64-hex-digit id of Docker (`/docker/<id>`,
/// `docker-<id>.scope`), containerd (`/kubepods/…/<id>`, `cri-containerd-<id>.scope`),
/// CRI-O (`crio-<id>.scope`) and Podman (`libpod-<id>.scope`). The innermost one wins.
pub fn container_id(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|segment| {
        let s = segment.strip_suffix(".scope").unwrap_or(segment);
        let id = s.rsplit(['-', ':']).next().unwrap_or(s);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| id.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn container_ids_come_from_every_runtime_naming() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod1234-5678/{ID}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12_34.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/system.slice/containerd.service/kubepods-burstable-pod1.slice:cri-containerd:{ID}"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(ID), "{path}");
        }
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-3.scope"),
            None
        );
        assert_eq!(container_id("/"), None);
    }

    #[test]
    fn the_unified_cgroup_wins_over_v1_controllers() {
        let hybrid = "12:cpu,cpuacct:/a\n1:name=systemd:/user.slice/s.scope\n0::/test/mcp\n";
        assert_eq!(cgroup_path(hybrid).as_deref(), Some("/test/mcp"));
        let v1_only = "12:cpu,cpuacct:/a\n1:name=systemd:/user.slice/s.scope\n0::/\n";
        assert_eq!(cgroup_path(v1_only).as_deref(), Some("/user.slice/s.scope"));
        assert_eq!(cgroup_path("0::/\n"), None);
    }

    #[test]
    fn uid_is_the_real_uid() {
        assert_eq!(parse_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(1000));
        assert_eq!(parse_uid("Name:\tx\n"), None);
    }

    #[test]
    fn a_process_in_a_pod_names_its_pod_and_namespace() {
        let root = std::env::temp_dir().join(format!("mcpwarden-proc-{}", std::process::id()));
        let p = root.join("42");
        let sa = p.join("root/var/run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(sa.join("namespace"), "team-a\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            p.join("environ"),
            b"PATH=/bin\0HOSTNAME=mcp-server-7d9f\0KUBERNETES_SERVICE_HOST=10.0.0.1\0",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            p.join("cgroup"),
            format!("0::/kubepods/burstable/pod1/{ID}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut t = ProcessTable::new(&root);
        let id = t.identity(42, "python3").clone();
        assert_eq!(id.pod_name.as_deref(), Some("mcp-server-7d9f"));
        assert_eq!(id.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(id.container_id.as_deref(), Some(ID));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let mut t = ProcessTable::default();
        let pid = std::process::id();
        let f = t.get(pid, "self").clone();
        assert_eq!(f.pid, pid);
        assert!(f.exe.is_some());
        // SAFETY: getuid has no preconditions.
        assert_eq!(f.uid, Some(unsafe { libc::getuid() }));
    }
}

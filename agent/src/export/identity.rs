//! Who the agent is: a stable agent id, the host name and the boot id.

use std::io;
use std::path::{Path, PathBuf};

use mcpwarden_proto::v1::AgentIdentity;

/// Default directory of the persisted agent id (`--state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mcpwarden";

/// Why the identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The state directory or its `agent-id` file could not be read or written.
    #[error("agent id file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The kernel gave no random UUID.
    #[error("generating an agent id: {0}")]
    Uuid(io::Error),
}

/// The identity of this agent: `agent_id` if given, else the UUID in `state_dir/agent-id`
/// (created on first use); the host is `NODE_NAME` when set (Kubernetes downward API), else
/// the kernel's hostname.
pub fn resolve(agent_id: Option<&str>, state_dir: &Path) -> Result<AgentIdentity, IdentityError> {
    let agent_id = match agent_id {
        Some(id) => id.to_owned(),
        None => persisted_id(state_dir)?,
    };
    Ok(AgentIdentity {
        agent_id,
        // Under Kubernetes the node's name comes from the downward API (`spec.nodeName`);
        // the pod's own hostname would name the agent pod, not the node.
        hostname: std::env::var("NODE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
            .unwrap_or_default(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn persisted_id(dir: &Path) -> Result<String, IdentityError> {
    let path = dir.join("agent-id");
    let err = |source| IdentityError::State {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let id = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(IdentityError::Uuid)?
        .trim()
        .to_owned();
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join("agent-id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_is_persisted_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = resolve(None, dir.path()).expect("first");
        let b = resolve(None, dir.path()).expect("second");
        assert_eq!(a.agent_id, b.agent_id);
        assert_eq!(a.agent_id.len(), 36, "{}", a.agent_id);
        assert!(!a.boot_id.is_empty());
        let c = resolve(Some("edge-1"), dir.path()).expect("explicit");
        assert_eq!(c.agent_id, "edge-1");
    }
}

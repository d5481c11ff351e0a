//! What must hold before loading: root, BTF, tracefs (mounted here when missing), and the
//! tracepoints we attach to.

use std::path::Path;

use super::{
    attach::{COMMON_PROGRAMS, SOCK_MODE_PROGRAMS},
    CaptureError,
};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn check() -> Result<(), CaptureError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CaptureError::NotRoot);
    }
    if !Path::new(BTF).exists() {
        return Err(CaptureError::NoBtf { path: BTF });
    }
    ensure_tracefs()?;
    // Needed in both modes (the syscall mode's own tracepoints are checked when attaching).
    for p in COMMON_PROGRAMS.iter().chain(SOCK_MODE_PROGRAMS) {
        let path = format!("{TRACEFS}/events/{}/{}", p.category, p.event);
        if !Path::new(&path).exists() {
            return Err(CaptureError::MissingTracepoint {
                category: p.category,
                name: p.event,
                path,
            });
        }
    }
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing unless it is already there.
fn ensure_tracefs() -> Result<(), CaptureError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("nodev"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(CaptureError::TracefsMount {
            path: TRACEFS,
            source: Box::new(std::io::Error::last_os_error()),
        });
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

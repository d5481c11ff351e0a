use thiserror::Error;

/// Why capture could not start. Each message says what is missing and what to do.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("mcpwarden run needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it as root")]
    NotRoot,
    #[error("kernel BTF is missing ({path} does not exist): a kernel with CONFIG_DEBUG_INFO_BTF=y is required")]
    NoBtf { path: &'static str },
    #[error("tracefs is not available at {path} and mounting it failed: {source}")]
    TracefsMount {
        path: &'static str,
        source: Box<std::io::Error>,
    },
    #[error("kernel tracepoint {category}/{name} is missing ({path} not found): a kernel with syscall and sock tracepoints is required")]
    MissingTracepoint {
        category: &'static str,
        name: &'static str,
        path: String,
    },
    #[error("this mcpwarden binary was built without its eBPF object: build it with `cargo xtask build`")]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    #[error("program {program} is missing from the eBPF object")]
    MissingProgram { program: &'static str },
    #[error("map {map} is missing from the eBPF object")]
    MissingMap { map: &'static str },
    #[error("loading or attaching program {program} ({category}/{event}) failed: {source}")]
    Program {
        program: &'static str,
        category: &'static str,
        event: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot read the layout of tracepoint {category}/{event} ({path}): {source}")]
    TracepointFormat {
        category: &'static str,
        event: &'static str,
        path: String,
        source: Box<std::io::Error>,
    },
    #[error("tracepoint {category}/{event} has a record layout this agent does not know ({path}): {mismatch}; the eBPF programs would read the wrong bytes, so they are not attached (report the kernel version)")]
    TracepointLayout {
        category: &'static str,
        event: &'static str,
        path: String,
        mismatch: super::tpformat::LayoutMismatch,
    },
    #[error("the sock capture mode reads x86_64 syscall numbers and registers, and this host is {arch}: use `--capture-mode syscalls` (or `auto`, which picks it)")]
    SockModeArch { arch: &'static str },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
}

//! The tracepoint record layouts the eBPF programs hard-code (the `(format):` comments in
//! `agent-ebpf/src/{sock,sockio,syscalls,conn}.rs`), checked at load against the kernel's
//! `events/<category>/<event>/format` files: a kernel whose layout differs would otherwise
//! feed the programs garbage. A mismatch is an error naming the field (or, for the sock
//! capture mode in `auto`, a fall back to the syscall mode).

use std::path::Path;

use thiserror::Error;

/// One field a program reads: its name, byte offset and size in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// The fields the programs read from one tracepoint.
#[derive(Debug, Clone, Copy)]
pub struct EventLayout {
    pub category: &'static str,
    pub event: &'static str,
    pub fields: &'static [FieldSpec],
}

const fn f(name: &'static str, offset: usize, size: usize) -> FieldSpec {
    FieldSpec { name, offset, size }
}

const SOCK_LENGTH: &[FieldSpec] = &[
    f("sk", 8, 8),
    f("family", 16, 2),
    f("protocol", 18, 2),
    f("ret", 20, 4),
    f("flags", 24, 4),
];
const INET_SOCK_SET_STATE: &[FieldSpec] = &[
    f("skaddr", 8, 8),
    f("oldstate", 16, 4),
    f("newstate", 20, 4),
    f("sport", 24, 2),
    f("dport", 26, 2),
    f("family", 28, 2),
    f("protocol", 30, 2),
    f("saddr", 32, 4),
    f("daddr", 36, 4),
    f("saddr_v6", 40, 16),
    f("daddr_v6", 56, 16),
];
const EXIT_RET: &[FieldSpec] = &[f("ret", 16, 8)];

macro_rules! layout {
    ($cat:literal, $ev:literal, $fields:expr) => {
        EventLayout {
            category: $cat,
            event: $ev,
            fields: $fields,
        }
    };
}

/// Every tracepoint field the programs read.
pub const LAYOUTS: &[EventLayout] = &[
    layout!("sock", "sock_send_length", SOCK_LENGTH),
    layout!("sock", "sock_recv_length", SOCK_LENGTH),
    layout!("sock", "inet_sock_set_state", INET_SOCK_SET_STATE),
    layout!("sched", "sched_process_exit", &[f("group_dead", 32, 1)]),
    layout!(
        "syscalls",
        "sys_enter_write",
        &[f("fd", 16, 8), f("buf", 24, 8), f("count", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_read",
        &[f("fd", 16, 8), f("buf", 24, 8), f("count", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_sendto",
        &[f("fd", 16, 8), f("buff", 24, 8), f("len", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_recvfrom",
        &[f("fd", 16, 8), f("ubuf", 24, 8), f("size", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_writev",
        &[f("fd", 16, 8), f("vec", 24, 8), f("vlen", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_readv",
        &[f("fd", 16, 8), f("vec", 24, 8), f("vlen", 32, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_sendmsg",
        &[f("fd", 16, 8), f("msg", 24, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_recvmsg",
        &[f("fd", 16, 8), f("msg", 24, 8)]
    ),
    layout!(
        "syscalls",
        "sys_enter_connect",
        &[f("fd", 16, 8), f("uservaddr", 24, 8)]
    ),
    layout!("syscalls", "sys_enter_close", &[f("fd", 16, 8)]),
    layout!("syscalls", "sys_exit_write", EXIT_RET),
    layout!("syscalls", "sys_exit_read", EXIT_RET),
    layout!("syscalls", "sys_exit_sendto", EXIT_RET),
    layout!("syscalls", "sys_exit_recvfrom", EXIT_RET),
    layout!("syscalls", "sys_exit_writev", EXIT_RET),
    layout!("syscalls", "sys_exit_readv", EXIT_RET),
    layout!("syscalls", "sys_exit_sendmsg", EXIT_RET),
    layout!("syscalls", "sys_exit_recvmsg", EXIT_RET),
    layout!("syscalls", "sys_exit_connect", EXIT_RET),
    layout!("syscalls", "sys_exit_accept4", EXIT_RET),
    layout!("syscalls", "sys_exit_accept", EXIT_RET),
];

/// The layout the programs expect of `category/event`, if they read any field of it.
pub fn layout_of(category: &str, event: &str) -> Option<&'static EventLayout> {
    LAYOUTS
        .iter()
        .find(|l| l.category == category && l.event == event)
}

/// A field of a `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// The fields of a tracepoint `format` file
/// (`\tfield:const char * buf;\toffset:24;\tsize:8;\tsigned:0;` lines).
pub fn parse_format(text: &str) -> Vec<Field> {
    text.lines()
        .filter_map(|line| {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';').map(str::trim) {
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.trim().parse().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.trim().parse().ok();
                }
            }
            let decl = decl?;
            // The name is the declaration's last word, without `*` or an array suffix.
            let last = decl.rsplit([' ', '*']).next()?;
            let name = last.split('[').next()?.to_string();
            Some(Field {
                name,
                offset: offset?,
                size: size?,
            })
        })
        .collect()
}

/// How the kernel's layout differs from the programs' (the first difference).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LayoutMismatch {
    #[error("field `{field}` is missing (expected at offset {offset}, size {size})")]
    Missing {
        field: &'static str,
        offset: usize,
        size: usize,
    },
    #[error("field `{field}` is at offset {found_offset} size {found_size}, the programs read offset {offset} size {size}")]
    Moved {
        field: &'static str,
        offset: usize,
        size: usize,
        found_offset: usize,
        found_size: usize,
    },
}

/// Checks a `format` file's text against the layout the programs expect.
pub fn check(layout: &EventLayout, format: &str) -> Result<(), LayoutMismatch> {
    let fields = parse_format(format);
    for want in layout.fields {
        let Some(got) = fields.iter().find(|f| f.name == want.name) else {
            return Err(LayoutMismatch::Missing {
                field: want.name,
                offset: want.offset,
                size: want.size,
            });
        };
        if got.offset != want.offset || got.size != want.size {
            return Err(LayoutMismatch::Moved {
                field: want.name,
                offset: want.offset,
                size: want.size,
                found_offset: got.offset,
                found_size: got.size,
            });
        }
    }
    Ok(())
}

/// Checks `category/event` against the format file under `tracefs` (no-op for an event whose
/// fields the programs do not read).
pub fn check_event(
    tracefs: &Path,
    category: &'static str,
    event: &'static str,
) -> Result<(), super::CaptureError> {
    let Some(layout) = layout_of(category, event) else {
        return Ok(());
    };
    let path = tracefs
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text =
        std::fs::read_to_string(&path).map_err(|e| super::CaptureError::TracepointFormat {
            category,
            event,
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
    check(layout, &text).map_err(|mismatch| super::CaptureError::TracepointLayout {
        category,
        event,
        path: path.display().to_string(),
        mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_LENGTH: &str = "name: sock_send_length\nID: 2284\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:void * sk;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u16 family;\toffset:16;\tsize:2;\tsigned:0;\n\tfield:__u16 protocol;\toffset:18;\tsize:2;\tsigned:0;\n\tfield:int ret;\toffset:20;\tsize:4;\tsigned:1;\n\tfield:int flags;\toffset:24;\tsize:4;\tsigned:1;\n\nprint fmt: \"sk address = %p\", REC->sk\n";

    const SET_STATE: &str = "name: inet_sock_set_state\nformat:\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;\n\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;\n\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;\n\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;\n\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;\n\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;\n\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;\n";

    const ENTER_SENDTO: &str = "name: sys_enter_sendto\nformat:\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:void * buff;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:size_t len;\toffset:32;\tsize:8;\tsigned:0;\n\tfield:unsigned int flags;\toffset:40;\tsize:8;\tsigned:0;\n";

    fn layout(cat: &str, ev: &str) -> &'static EventLayout {
        layout_of(cat, ev).unwrap()
    }

    #[test]
    fn format_files_parse_into_names_offsets_and_sizes() {
        let fields = parse_format(SET_STATE);
        assert!(fields.contains(&Field {
            name: "saddr_v6".into(),
            offset: 40,
            size: 16
        }));
        assert!(fields.contains(&Field {
            name: "skaddr".into(),
            offset: 8,
            size: 8
        }));
        assert_eq!(parse_format(SEND_LENGTH).len(), 9);
    }

    #[test]
    fn the_layouts_the_programs_read_match_this_kernel_generation() {
        assert_eq!(
            check(layout("sock", "sock_send_length"), SEND_LENGTH),
            Ok(())
        );
        assert_eq!(
            check(layout("sock", "inet_sock_set_state"), SET_STATE),
            Ok(())
        );
        assert_eq!(
            check(layout("syscalls", "sys_enter_sendto"), ENTER_SENDTO),
            Ok(())
        );
    }

    #[test]
    fn a_moved_field_is_an_error_naming_it() {
        let moved = SEND_LENGTH.replace("protocol;\toffset:18", "protocol;\toffset:20");
        let err = check(layout("sock", "sock_send_length"), &moved).unwrap_err();
        assert_eq!(
            err,
            LayoutMismatch::Moved {
                field: "protocol",
                offset: 18,
                size: 2,
                found_offset: 20,
                found_size: 2
            }
        );
        assert!(err.to_string().contains("`protocol`"), "{err}");
    }

    #[test]
    fn a_missing_or_resized_field_is_an_error_naming_it() {
        let gone = SET_STATE.replace("saddr_v6", "src_v6");
        assert!(matches!(
            check(layout("sock", "inet_sock_set_state"), &gone),
            Err(LayoutMismatch::Missing {
                field: "saddr_v6",
                ..
            })
        ));
        let narrow = ENTER_SENDTO.replace("len;\toffset:32;\tsize:8", "len;\toffset:32;\tsize:4");
        assert!(matches!(
            check(layout("syscalls", "sys_enter_sendto"), &narrow),
            Err(LayoutMismatch::Moved {
                field: "len",
                found_size: 4,
                ..
            })
        ));
    }

    #[test]
    fn every_attached_tracepoint_with_read_fields_has_a_layout() {
        use crate::capture::attach::{COMMON_PROGRAMS, SOCK_MODE_PROGRAMS, SYSCALL_MODE_PROGRAMS};
        for p in COMMON_PROGRAMS
            .iter()
            .chain(SOCK_MODE_PROGRAMS)
            .chain(SYSCALL_MODE_PROGRAMS)
        {
            if p.event == "sched_process_exec" {
                continue; // reads no field
            }
            assert!(
                layout_of(p.category, p.event).is_some(),
                "{}/{} has no layout",
                p.category,
                p.event
            );
        }
    }

    #[test]
    fn this_hosts_tracefs_agrees_when_readable() {
        let root = Path::new(crate::capture::preflight::TRACEFS);
        for l in LAYOUTS {
            let p = root
                .join("events")
                .join(l.category)
                .join(l.event)
                .join("format");
            if let Ok(text) = std::fs::read_to_string(&p) {
                assert_eq!(check(l, &text), Ok(()), "{}", p.display());
            }
        }
    }
}

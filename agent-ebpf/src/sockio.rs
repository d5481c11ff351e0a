//! Sock capture mode (the default where the kernel allows it): the whole payload path runs in
//! `sock:sock_send_length` / `sock:sock_recv_length`, which fire only inside socket I/O. The
//! syscall's arguments come from the task's saved user registers (`bpf_task_pt_regs`), so no
//! `sys_enter`/`sys_exit` program runs, and reads and writes of files, pipes and terminals on
//! the host pay nothing. Userspace falls back to the syscall mode when the kernel refuses
//! these programs.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use mcpwarden_common::{counters::Counter, event::DataSource};

use crate::{
    ctx::{field, skip_tgid},
    maps::count,
    sock::is_tcp,
    syscalls::{on_socket_io, SocketIo},
};

const MSG_PEEK: i32 = 2;

// x86_64 syscall numbers we follow.
const NR_READ: u64 = 0;
const NR_WRITE: u64 = 1;
const NR_READV: u64 = 19;
const NR_WRITEV: u64 = 20;
const NR_SENDTO: u64 = 44;
const NR_RECVFROM: u64 = 45;
const NR_SENDMSG: u64 = 46;
const NR_RECVMSG: u64 = 47;

// struct pt_regs (x86_64, UAPI-stable layout): index of each saved register (8 bytes each).
const REG_DX: usize = 12;
const REG_SI: usize = 13;
const REG_DI: usize = 14;
const REG_ORIG_AX: usize = 15;

// sock:sock_send_length / sock:sock_recv_length (format):
//   void *sk @8; __u16 family @16; __u16 protocol @18; int ret @20; int flags @24
#[tracepoint]
pub fn sock_send_capture(ctx: TracePointContext) -> u32 {
    capture(&ctx, true);
    0
}

#[tracepoint]
pub fn sock_recv_capture(ctx: TracePointContext) -> u32 {
    capture(&ctx, false);
    0
}

#[inline(always)]
fn capture(ctx: &TracePointContext, send: bool) {
    // Cheapest checks first: unix sockets, UDP and our own I/O leave after two context loads.
    let family: u16 = field(ctx, 16);
    let protocol: u16 = field(ctx, 18);
    if !is_tcp(family, protocol) {
        return;
    }
    if !send && field::<i32>(ctx, 24) & MSG_PEEK != 0 {
        return; // peeked bytes will be read again: carrying them now would double them
    }
    let id = bpf_get_current_pid_tgid();
    if skip_tgid((id >> 32) as u32) {
        return;
    }
    // SAFETY: helpers without preconditions; the result is a trusted BTF pointer to the
    // current task's saved user registers (zeroed for kernel threads).
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u64;
    if regs.is_null() {
        return;
    }
    // SAFETY: loads within struct pt_regs, checked by the verifier against its BTF.
    let (nr, di, si, dx) = unsafe {
        (
            core::ptr::read_volatile(regs.add(REG_ORIG_AX)),
            core::ptr::read_volatile(regs.add(REG_DI)),
            core::ptr::read_volatile(regs.add(REG_SI)),
            core::ptr::read_volatile(regs.add(REG_DX)),
        )
    };
    let (source, vectored) = match (nr, send) {
        (NR_WRITE, true) => (DataSource::Write, false),
        (NR_SENDTO, true) => (DataSource::SendTo, false),
        (NR_WRITEV, true) => (DataSource::Writev, true),
        (NR_SENDMSG, true) => (DataSource::SendMsg, true),
        (NR_READ, false) => (DataSource::Read, false),
        (NR_RECVFROM, false) => (DataSource::RecvFrom, false),
        (NR_READV, false) => (DataSource::Readv, true),
        (NR_RECVMSG, false) => (DataSource::RecvMsg, true),
        // sendmmsg/recvmmsg, sendfile/splice, io_uring, kernel sockets: not followed.
        _ => {
            count(Counter::UnsupportedSyscall, 1);
            return;
        }
    };
    let (buf, cnt) = if nr == NR_SENDMSG || nr == NR_RECVMSG {
        // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov @16;
        //                      __kernel_size_t msg_iovlen @24; ... }
        // SAFETY: fault-tolerant user reads.
        let iov = unsafe { bpf_probe_read_user((si + 16) as *const u64) };
        let len = unsafe { bpf_probe_read_user((si + 24) as *const u64) };
        match (iov, len) {
            (Ok(i), Ok(l)) => (i, l),
            _ => {
                count(Counter::ReadUserFailed, 1);
                return;
            }
        }
    } else {
        (si, dx)
    };
    if buf == 0 || cnt == 0 {
        return; // kernel thread (zeroed registers) or nothing to read
    }
    let ret: i32 = field(ctx, 20);
    if !vectored && ret > 0 && ret as u64 > cnt {
        return; // registers do not describe this I/O
    }
    on_socket_io(&SocketIo {
        id,
        fd: di as u32,
        buf,
        count: cnt,
        vectored,
        source: source as u8,
        sk: field(ctx, 8),
        family,
        protocol,
        ret: ret as i64,
        from_syscall_exit: false,
    });
}

//! Loading (verifying) the programs a run will attach, concurrently, before their attach
//! sites ask for them.
//!
//! The kernel's verifier is most of the agent's start-up: 22 to 25 programs, 1.4–1.8 s
//! in a row for the monitor and about 3.3 s in hold mode (whose libc send-family programs
//! are verified up front), measured with `strace -T` on `BPF_PROG_LOAD`. Privileged loads
//! are not serialised in the kernel, so they spread over the cores here. Every attach site
//! still loads what is not loaded yet, in turn, exactly as before: a program that fails
//! here (a kernel that refuses the sock-mode programs, say) fails again there, with the
//! error and the fallback that site already has. Nothing is attached here.

use std::sync::Mutex;

use aya::programs::Program;
use aya::Ebpf;

/// At most this many loading threads (the verifier is CPU work; more than the cores only
/// waits).
const MAX_THREADS: usize = 4;

/// Loads the programs named in `names` that are not loaded yet, from up to one thread per
/// core, the first names first (put the slowest to verify first). Returns how many loaded.
pub fn preload(ebpf: &mut Ebpf, names: &[&str]) -> usize {
    let mut wanted: Vec<(usize, &mut Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, p)| {
            let at = names.iter().position(|n| *n == name)?;
            p.fd().is_err().then_some((at, p))
        })
        .collect();
    // Popped from the end: the first names last in the vector.
    wanted.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(wanted.len());
    let queue = Mutex::new(wanted);
    let loaded = Mutex::new(0usize);
    let work = || loop {
        let next = match queue.lock() {
            Ok(mut q) => q.pop(),
            Err(_) => None,
        };
        let Some((_, program)) = next else { break };
        match load(program) {
            Ok(true) => {
                if let Ok(mut n) = loaded.lock() {
                    *n += 1;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("preload: left to its attach site: {e}"),
        }
    };
    std::thread::scope(|s| {
        // The calling thread is one of the workers; a thread that cannot start leaves its
        // share to the others.
        for _ in 1..threads {
            if let Err(e) = std::thread::Builder::new()
                .name("prog-load".into())
                .spawn_scoped(s, work)
            {
                tracing::debug!("preload: no extra loading thread ({e})");
            }
        }
        work();
    });
    loaded.into_inner().unwrap_or(0)
}

/// Loads one program of the types the agent attaches (true); other types are left alone
/// (false).
fn load(program: &mut Program) -> Result<bool, aya::programs::ProgramError> {
    match program {
        Program::TracePoint(p) => p.load().map(|()| true),
        Program::UProbe(p) => p.load().map(|()| true),
        Program::CgroupSockAddr(p) => p.load().map(|()| true),
        _ => Ok(false),
    }
}

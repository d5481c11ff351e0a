//! Where to put the SSL read and write probes in a file: on OpenSSL's shared read and write
//! cores when the file's code allows it, else on the exported functions.
//!
//! Why: a uprobe on an instruction the kernel cannot emulate is single-stepped out of line,
//! a second trap. OpenSSL 3's `SSL_read_ex`/`SSL_write_ex` begin with `sub $8,%rsp`, which
//! x86 does not emulate; `SSL_read`/`SSL_write` begin the same way. Measured on this host's VM
//! (`cargo xtask bench --parts hooks`, Debian's libssl 3.0): an empty entry probe on the
//! exports costs about 6.8 µs per call, the same probe on the cores, whose first instruction
//! is a `push` (emulated), about 0.6 µs. Both exported pairs call one core each
//! (`ssl_read_internal(s, buf, num, &readbytes)`, `ssl_write_internal(s, buf, num, &written)`,
//! not exported), whose arguments and result are those of the `_ex` functions: one entry and
//! one return probe on each core sees every `SSL_read`, `SSL_read_ex`, `SSL_write` and
//! `SSL_write_ex` call once, with the `_ex` programs.
//!
//! The cores are found by decoding, never guessed: `SSL_read_ex` must be
//! `[endbr64] sub $imm8,%rsp; call rel32`, the callee must begin with a `push`, and
//! `SSL_read`'s first bytes must hold a `call rel32` to the same callee (the same for write).
//! x86-64 only; anything else (another build, node's statically linked OpenSSL if it differs,
//! arm64) keeps the exported symbols.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// File offsets of the two cores (for `UProbeAttachLocation::AbsoluteOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreSites {
    pub read: u64,
    pub write: u64,
}

/// Bytes of `SSL_read`/`SSL_write` searched for the call to the core.
const PLAIN_SCAN: usize = 96;

/// The cores of the OpenSSL in `path`, when its code has the shape described above.
pub fn core_sites(path: &Path) -> Option<CoreSites> {
    if std::env::consts::ARCH != "x86_64" {
        return None;
    }
    let mut elf = Elf::read(path)?;
    let read = elf.core_of("SSL_read_ex", "SSL_read")?;
    let write = elf.core_of("SSL_write_ex", "SSL_write")?;
    (read != write).then_some(CoreSites { read, write })
}

struct Elf {
    file: File,
    /// (name, virtual address) of the four exports.
    symbols: Vec<(String, u64)>,
    /// (virtual address, file offset, size) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

impl Elf {
    fn read(path: &Path) -> Option<Self> {
        use object::{Object, ObjectSegment, ObjectSymbol};
        let cache = object::ReadCache::new(File::open(path).ok()?);
        let (symbols, segments) = {
            let elf = object::File::parse(&cache).ok()?;
            if elf.architecture() != object::Architecture::X86_64 {
                return None;
            }
            let symbols = elf
                .dynamic_symbols()
                .filter(|s| s.is_definition())
                .filter_map(|s| {
                    let name = s.name().ok()?;
                    ["SSL_read_ex", "SSL_read", "SSL_write_ex", "SSL_write"]
                        .contains(&name)
                        .then(|| (name.to_string(), s.address()))
                })
                .collect();
            let segments = elf
                .segments()
                .map(|s| (s.address(), s.file_range().0, s.file_range().1))
                .collect();
            (symbols, segments)
        };
        Some(Self {
            file: File::open(path).ok()?,
            symbols,
            segments,
        })
    }

    fn address(&self, name: &str) -> Option<u64> {
        self.symbols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    fn offset_of(&self, addr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(va, _, size)| addr >= *va && addr < va + size)
            .map(|(va, off, _)| addr - va + off)
    }

    fn bytes_at(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let off = self.offset_of(addr)?;
        self.file.seek(SeekFrom::Start(off)).ok()?;
        let mut buf = vec![0u8; len];
        self.file.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// The file offset of the core `ex` calls, when `plain` calls it too.
    fn core_of(&mut self, ex: &str, plain: &str) -> Option<u64> {
        let ex_addr = self.address(ex)?;
        let plain_addr = self.address(plain)?;
        let head = self.bytes_at(ex_addr, 13)?;
        let core = call_after_prologue(ex_addr, &head)?;
        if !begins_with_push(&self.bytes_at(core, 2)?) {
            return None;
        }
        let body = self.bytes_at(plain_addr, PLAIN_SCAN)?;
        if !calls(plain_addr, &body, core) {
            return None;
        }
        self.offset_of(core)
    }
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// `[endbr64] sub $imm8,%rsp; call rel32` at `addr`: the call's target.
fn call_after_prologue(addr: u64, head: &[u8]) -> Option<u64> {
    let start = if head.starts_with(&ENDBR64) { 4 } else { 0 };
    let code = head.get(start..start + 9)?;
    if code[..3] != [0x48, 0x83, 0xec] || code[4] != 0xe8 {
        return None;
    }
    let rel = i32::from_le_bytes(code[5..9].try_into().ok()?);
    let next = addr + start as u64 + 9;
    Some(next.wrapping_add_signed(i64::from(rel)))
}

/// `push %reg` (`50+r`, or `41 50+r` for r8–r15): an instruction the kernel emulates.
fn begins_with_push(b: &[u8]) -> bool {
    match b {
        [op, ..] if (0x50..=0x57).contains(op) => true,
        [0x41, op, ..] => (0x50..=0x57).contains(op),
        _ => false,
    }
}

/// Does `body` (the code at `addr`) hold a `call rel32` to `target`?
fn calls(addr: u64, body: &[u8], target: u64) -> bool {
    body.windows(5).enumerate().any(|(i, w)| {
        w[0] == 0xe8 && {
            let rel = i32::from_le_bytes([w[1], w[2], w[3], w[4]]);
            (addr + i as u64 + 5).wrapping_add_signed(i64::from(rel)) == target
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prologue_call_is_decoded_with_and_without_endbr64() {
        // SSL_write_ex of Debian's libssl 3.0 at 0x35a10: sub $0x8,%rsp; call 0x355a0.
        let head = [
            0x48, 0x83, 0xec, 0x08, 0xe8, 0x87, 0xfb, 0xff, 0xff, 0x31, 0xd2,
        ];
        assert_eq!(call_after_prologue(0x35a10, &head), Some(0x355a0));
        let mut cet = ENDBR64.to_vec();
        cet.extend_from_slice(&head);
        assert_eq!(call_after_prologue(0x35a0c, &cet), Some(0x355a0));
        // Another first instruction (a stack-protector prologue): no core.
        let plain = [
            0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00,
        ];
        assert_eq!(call_after_prologue(0x35980, &plain), None);
        assert_eq!(call_after_prologue(0, &head[..6]), None);
    }

    #[test]
    fn only_a_push_counts_as_an_emulated_first_instruction() {
        assert!(begins_with_push(&[0x41, 0x56]));
        assert!(begins_with_push(&[0x55, 0x48]));
        assert!(!begins_with_push(&[0x48, 0x83]));
        assert!(!begins_with_push(&[0x41, 0x89]));
        assert!(!begins_with_push(&[]));
    }

    #[test]
    fn a_call_to_the_core_is_found_anywhere_in_the_scanned_bytes() {
        // call at 0x1010 to 0x2000: rel = 0x2000 - 0x1015.
        let mut body = vec![0x90; 32];
        body[16] = 0xe8;
        body[17..21].copy_from_slice(&(0x2000i32 - 0x1015).to_le_bytes());
        assert!(calls(0x1000, &body, 0x2000));
        assert!(!calls(0x1000, &body, 0x2004));
    }

    #[test]
    fn the_system_libssl_is_resolved_to_two_distinct_cores_or_left_alone() {
        // Whatever OpenSSL this host has: a resolution, when there is one, names two
        // distinct offsets inside the file.
        for path in [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib64/libssl.so.3",
            "/usr/bin/node",
        ] {
            let path = Path::new(path);
            let found = core_sites(path);
            eprintln!("{} → {found:x?}", path.display());
            if let Some(s) = found {
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                assert_ne!(s.read, s.write);
                assert!(s.read < len && s.write < len, "{s:?}");
            }
        }
    }

    #[test]
    fn a_libssl_whose_exports_have_the_known_shape_resolves_to_cores_beginning_with_a_push() {
        // The OpenSSL 3 of the development and CI hosts (Debian) has the shape: it must
        // resolve, and to code an x86 uprobe emulates.
        let path = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        let Some(mut elf) = Elf::read(path) else {
            return; // no such library on this host
        };
        let ex = elf.address("SSL_read_ex").expect("SSL_read_ex exported");
        let head = elf.bytes_at(ex, 13).expect("code of SSL_read_ex");
        if call_after_prologue(ex, &head).is_none() {
            return; // another build: the exports stay, nothing to check here
        }
        let s = core_sites(path).expect("the known shape resolves to cores");
        let mut file = File::open(path).expect("open");
        for off in [s.read, s.write] {
            let mut b = [0u8; 2];
            file.seek(SeekFrom::Start(off)).expect("seek");
            file.read_exact(&mut b).expect("read");
            assert!(begins_with_push(&b), "{off:#x}: {b:x?}");
        }
    }
}

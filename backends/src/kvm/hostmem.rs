//! Host memory: mappings, residency, and loads/stores that survive SIGBUS.
//!
//! A host access to a guest_memfd page that the kernel refuses raises SIGBUS. The harness
//! makes that an outcome with an exception-table scheme like the kernel's own: each access
//! is one instruction in an `asm!` block that first arms a per-thread fixup address; the
//! SIGBUS handler, if armed, moves the faulting thread's RIP to the fixup and records the
//! fault. A memory-failure SIGBUS (BUS_MCEERR_AR/AO) that the kernel sends during a call
//! made through [`catching_memory_failure`] is recorded and the call goes on. Any other
//! SIGBUS gets the default action.

use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::sync::Once;

use crate::op::{Width, PAGE_SIZE};

/// What slot memory's address is congruent to its GPA modulo (a file mapping's to its file
/// offset): 1 GiB, the largest x86 page KVM maps (address space is all it costs).
pub const SLOT_ALIGN: u64 = 1 << 30;

thread_local! {
    /// Where to resume after a SIGBUS in an armed access; 0 when no access is armed.
    static FIXUP: Cell<usize> = const { Cell::new(0) };
    /// Set by the handler when it took the fixup.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
    /// Whether a memory-failure SIGBUS is expected now, and how many arrived.
    static MCE_EXPECTED: Cell<bool> = const { Cell::new(false) };
    static MCE_SEEN: Cell<u32> = const { Cell::new(0) };
}

/// Whether `info` is a memory-failure signal: memory_failure()'s kill_proc()
/// (`force_sig_mceerr(BUS_MCEERR_AR, ...)` to the caller, `send_sig_mceerr(BUS_MCEERR_AO,
/// ...)` to others) or KVM's kvm_send_hwpoison_signal(). Sent, not raised by the
/// instruction at RIP: returning from the handler resumes the code after the syscall.
fn is_memory_failure(info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    code == libc::BUS_MCEERR_AR || code == libc::BUS_MCEERR_AO
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let fixup = FIXUP.with(Cell::get);
    if fixup == 0 && MCE_EXPECTED.with(Cell::get) && is_memory_failure(info) {
        MCE_SEEN.with(|n| n.set(n.get() + 1));
        return;
    }
    if fixup == 0 {
        // Not ours: restore the default action; returning re-executes the access, which
        // then kills the process as SIGBUS normally would.
        // SAFETY: resetting a signal disposition is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
        return;
    }
    FAULTED.with(|f| f.set(true));
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers; we only move
    // RIP to the armed fixup, which lies in the same asm block as the faulting instruction.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = fixup as i64;
    }
}

fn install_sigbus_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only touches
        // thread-locals with const initialisers (no allocation, no locks).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            let rc = libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            assert_eq!(rc, 0, "sigaction(SIGBUS): {}", io::Error::last_os_error());
        }
    });
}

/// Runs `call` (a syscall that may make the kernel handle a memory failure:
/// madvise(MADV_HWPOISON), KVM_RUN) with memory-failure SIGBUS recorded rather than fatal,
/// on this thread; answers its result and how many such signals arrived.
pub fn catching_memory_failure<T>(call: impl FnOnce() -> T) -> (T, u32) {
    install_sigbus_handler();
    MCE_SEEN.with(|n| n.set(0));
    MCE_EXPECTED.with(|e| e.set(true));
    let result = call();
    MCE_EXPECTED.with(|e| e.set(false));
    (result, MCE_SEEN.with(Cell::get))
}

/// A load or store through a host mapping, or SIGBUS.
#[derive(Debug, PartialEq, Eq)]
pub enum HostAccess {
    Done(u64),
    Sigbus,
}

macro_rules! guarded {
    ($insn:literal, $addr:expr, $val:ident, $dir:ident) => {{
        install_sigbus_handler();
        let fixup = FIXUP.with(|c| c.as_ptr());
        FAULTED.with(|f| f.set(false));
        // SAFETY: the caller guarantees `$addr` lies inside a live mapping of ours; the
        // only fault possible there is the SIGBUS the handler turns into a jump to label 2,
        // which is inside this block, after the access. The fixup slot is disarmed again
        // before the block ends.
        unsafe {
            std::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov qword ptr [{fixup}], {tmp}",
                $insn,
                "2:",
                "mov qword ptr [{fixup}], 0",
                fixup = in(reg) fixup,
                tmp = out(reg) _,
                addr = in(reg) $addr,
                val = $dir(reg) $val,
                options(nostack),
            );
        }
        FAULTED.with(Cell::get)
    }};
}

/// Loads `width` bytes at `addr`.
///
/// # Safety
/// `addr..addr + width` must lie inside a live shared mapping made by this process.
pub unsafe fn load(addr: *const u8, width: Width) -> HostAccess {
    let mut v: u64 = 0;
    let faulted = match width {
        Width::W1 => guarded!("movzx {val:e}, byte ptr [{addr}]", addr, v, inout),
        Width::W2 => guarded!("movzx {val:e}, word ptr [{addr}]", addr, v, inout),
        Width::W4 => guarded!("mov {val:e}, dword ptr [{addr}]", addr, v, inout),
        Width::W8 => guarded!("mov {val}, qword ptr [{addr}]", addr, v, inout),
    };
    if faulted {
        HostAccess::Sigbus
    } else {
        HostAccess::Done(v)
    }
}

/// Stores the low `width` bytes of `value` at `addr`.
///
/// # Safety
/// As for [`load`].
pub unsafe fn store(addr: *mut u8, width: Width, value: u64) -> HostAccess {
    let faulted = match width {
        Width::W1 => guarded!("mov byte ptr [{addr}], {val:l}", addr, value, in),
        Width::W2 => guarded!("mov word ptr [{addr}], {val:x}", addr, value, in),
        Width::W4 => guarded!("mov dword ptr [{addr}], {val:e}", addr, value, in),
        Width::W8 => guarded!("mov qword ptr [{addr}], {val}", addr, value, in),
    };
    if faulted {
        HostAccess::Sigbus
    } else {
        HostAccess::Done(0)
    }
}

/// A mapping this process made and unmaps when dropped.
pub struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it between threads is fine.
unsafe impl Send for Mapping {}

impl Mapping {
    /// MAP_SHARED, read/write, of `len` bytes of `fd` from offset 0, at an address aligned
    /// to [`SLOT_ALIGN`]: a slot bound at file offset O and a GPA congruent to O then passes
    /// KVM's alignment check for large pages (see [`Mapping::anonymous_for_gpa`]).
    pub fn shared(fd: libc::c_int, len: usize) -> io::Result<Mapping> {
        let room = Self::aligned_room(len, 0)?;
        let flags = libc::MAP_SHARED | libc::MAP_FIXED;
        // SAFETY: MAP_FIXED over `room`, an anonymous mapping this value owns, replaces
        // exactly that range; `room` is dropped below only if the mmap failed.
        let addr = unsafe { libc::mmap(room.addr() as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(room)
    }

    /// Private anonymous memory, not reserved (the guest touches little of it).
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1)
    }

    /// Anonymous memory for a memslot at `gpa` that KVM may map with 2 MiB pages: its
    /// address is congruent to `gpa` modulo [`SLOT_ALIGN`], and it asks for transparent
    /// hugepages (MADV_HUGEPAGE: the lane kernel's THP is in madvise mode).
    ///
    /// kvm_alloc_memslot_metadata() (arch/x86/kvm/x86.c, 7.2) disallows every large page of
    /// a level in a slot when `(slot->base_gfn ^ ugfn) & (KVM_PAGES_PER_HPAGE(level) - 1)`,
    /// ugfn being userspace_addr's page number, for the shared and private sides alike; and
    /// host_pfn_mapping_level() (arch/x86/kvm/mmu/mmu.c) maps a shared GFN huge only where
    /// the host's own page table does, i.e. where a THP backs it (2 MiB at most: anonymous
    /// memory has no PUD-sized THP, so the 1 GiB congruence only keeps that level's
    /// attribute tracking alive).
    pub fn anonymous_for_gpa(len: usize, gpa: u64) -> io::Result<Mapping> {
        let m = Self::aligned_room(len, gpa)?;
        // EINVAL on a kernel without THP: the memory is then plain 4 KiB pages, still valid.
        // SAFETY: madvise on our own mapping changes only how it is backed.
        unsafe { libc::madvise(m.addr() as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        Ok(m)
    }

    /// `len` bytes of private anonymous memory at an address congruent to `to` modulo
    /// [`SLOT_ALIGN`]: a larger mapping (address space only: MAP_NORESERVE, untouched)
    /// trimmed at both ends.
    fn aligned_room(len: usize, to: u64) -> io::Result<Mapping> {
        let spare = SLOT_ALIGN as usize;
        let whole = Self::anonymous(len.checked_add(spare).ok_or(io::Error::from_raw_os_error(libc::ENOMEM))?)?;
        let base = whole.addr() as usize;
        let skip = (to as usize).wrapping_sub(base) % spare;
        std::mem::forget(whole);
        // SAFETY: the head and tail are the parts of the fresh mapping above (forgotten,
        // so nothing unmaps them twice) outside [base + skip, base + skip + len).
        unsafe {
            if skip > 0 {
                libc::munmap(base as *mut libc::c_void, skip);
            }
            libc::munmap((base + skip + len) as *mut libc::c_void, spare - skip);
        }
        Ok(Mapping { addr: NonNull::new((base + skip) as *mut u8).expect("inside a mapping"), len })
    }

    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing aliases nothing.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr: NonNull::new(addr as *mut u8).expect("mmap never returns NULL on success"), len })
    }

    /// Unmaps the memory but keeps its address range reserved (PROT_NONE) until the
    /// returned value is dropped, so that no later mapping lands where a memslot's
    /// userspace_addr still points.
    pub fn retire(self) -> io::Result<Mapping> {
        let flags = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: MAP_FIXED over our own mapping replaces exactly the range we own.
        let addr = unsafe { libc::mmap(self.addr() as *mut libc::c_void, self.len, libc::PROT_NONE, flags, -1, 0) };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let reserved = Mapping { addr: self.addr, len: self.len };
        std::mem::forget(self);
        Ok(reserved)
    }

    pub fn addr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Page-cache residency of the first `pages` pages (mincore()).
    pub fn residency(&self, pages: usize) -> io::Result<Vec<bool>> {
        let pages = pages.min(self.len / PAGE_SIZE as usize);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is inside our mapping and `vec` has one byte per page.
        let rc = unsafe { libc::mincore(self.addr() as *mut libc::c_void, pages * PAGE_SIZE as usize, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(vec.into_iter().map(|b| b & 1 != 0).collect())
    }

    /// Copies page `page` out, or reports SIGBUS. Used on pages known to be resident or
    /// accessible; a refused page faults on its first byte.
    pub fn read_page(&self, page: usize) -> Option<Box<[u8; PAGE_SIZE as usize]>> {
        let mut out = Box::new([0u8; PAGE_SIZE as usize]);
        let base = page * PAGE_SIZE as usize;
        assert!(base + PAGE_SIZE as usize <= self.len, "page {page} outside the mapping");
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            // SAFETY: inside the mapping (asserted above).
            match unsafe { load(self.addr().add(base + i * 8), Width::W8) } {
                HostAccess::Done(v) => chunk.copy_from_slice(&v.to_le_bytes()),
                HostAccess::Sigbus => return None,
            }
        }
        Some(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing refers to it once we are dropped.
        unsafe { libc::munmap(self.addr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_every_width_on_anonymous_memory() {
        let m = Mapping::anonymous(PAGE_SIZE as usize).unwrap();
        for (i, w) in Width::ALL.into_iter().enumerate() {
            // SAFETY: 64 * i + 8 stays inside the page-sized mapping `m` owns.
            let addr = unsafe { m.addr().add(64 * i) };
            let value = 0x1122_3344_5566_7788u64;
            // SAFETY: `addr` is mapped (above) and only this test touches it.
            assert_eq!(unsafe { store(addr, w, value) }, HostAccess::Done(0));
            // SAFETY: as for the store.
            assert_eq!(unsafe { load(addr, w) }, HostAccess::Done(w.truncate(value)), "width {w:?}");
        }
    }

    #[test]
    fn slot_memory_is_congruent_to_its_gpa_and_file_mappings_aligned() {
        for gpa in [0, PAGE_SIZE, 3 << 20, (5 << 30) + (7 << 12)] {
            let m = Mapping::anonymous_for_gpa(4 << 20, gpa).unwrap();
            assert_eq!((m.addr() as u64).wrapping_sub(gpa) % SLOT_ALIGN, 0, "gpa {gpa:#x}");
            // SAFETY: the last byte of the mapping `m` owns.
            assert_eq!(unsafe { store(m.addr().add(m.len() - 1), Width::W1, 5) }, HostAccess::Done(0));
        }
        // SAFETY: a NUL-terminated name; the fd is checked below.
        let fd = unsafe { libc::memfd_create(c"gmemfuzz-test".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` is the memfd made above.
        assert_eq!(unsafe { libc::ftruncate(fd, 8 * PAGE_SIZE as i64) }, 0);
        let m = Mapping::shared(fd, 8 * PAGE_SIZE as usize).unwrap();
        assert_eq!(m.addr() as u64 % SLOT_ALIGN, 0);
        // SAFETY: inside the file and the mapping.
        assert_eq!(unsafe { store(m.addr(), Width::W8, 9) }, HostAccess::Done(0));
        // SAFETY: the mapping keeps the file; the fd is ours and used no more.
        unsafe { libc::close(fd) };
    }

    /// A shared mapping of two pages over a one-page memfd: the second page raises SIGBUS.
    fn one_page_file_mapped_over_two() -> Mapping {
        // SAFETY: a NUL-terminated name; the fd is checked below.
        let fd = unsafe { libc::memfd_create(c"gmemfuzz-test".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` is the memfd made above.
        assert_eq!(unsafe { libc::ftruncate(fd, PAGE_SIZE as i64) }, 0);
        let m = Mapping::shared(fd, 2 * PAGE_SIZE as usize).unwrap();
        // SAFETY: the mapping keeps the file; the fd is ours and used no more.
        unsafe { libc::close(fd) };
        m
    }

    #[test]
    fn sigbus_beyond_end_of_file_is_an_outcome() {
        // A shared mapping of a memfd past its end raises SIGBUS, like a refused
        // guest_memfd page does.
        let m = one_page_file_mapped_over_two();
        // SAFETY: the first page of `m` is inside the file.
        assert_eq!(unsafe { store(m.addr(), Width::W4, 7) }, HostAccess::Done(0));
        // SAFETY: the second page is still inside the two-page mapping.
        let beyond = unsafe { m.addr().add(PAGE_SIZE as usize) };
        // SAFETY: mapped but past the file's end: the access raises SIGBUS, which
        // `load`/`store` turn into an outcome (that is what this test checks).
        assert_eq!(unsafe { load(beyond, Width::W8) }, HostAccess::Sigbus);
        // SAFETY: as above.
        assert_eq!(unsafe { store(beyond, Width::W1, 1) }, HostAccess::Sigbus);
        // The handler disarmed itself: a normal access still works afterwards.
        // SAFETY: the first page, as before.
        assert_eq!(unsafe { load(m.addr(), Width::W4) }, HostAccess::Done(7));
        assert_eq!(m.residency(1).unwrap(), vec![true]);
    }

    #[test]
    fn cross_page_store_that_faults_on_the_second_page_writes_nothing() {
        // Probe of what a host access across a page boundary leaves when only the second
        // page raises SIGBUS: the first page is faulted in (the CPU takes the fault for it
        // first) but the store, one instruction, is not performed at all.
        let m = one_page_file_mapped_over_two();
        // SAFETY: 4 bytes before the end of the first page of the two-page mapping.
        let split = unsafe { m.addr().add(PAGE_SIZE as usize - 4) };
        assert_eq!(m.residency(1).unwrap(), vec![false]);
        // SAFETY: mapped; the second page is past the file's end and raises SIGBUS, which
        // `store` turns into an outcome (what this test checks).
        assert_eq!(unsafe { store(split, Width::W8, u64::MAX) }, HostAccess::Sigbus);
        assert_eq!(m.residency(1).unwrap(), vec![true], "the first page was faulted in");
        // SAFETY: the first page, inside the file.
        assert_eq!(unsafe { load(split, Width::W4) }, HostAccess::Done(0), "no byte of the faulting store landed");
        // SAFETY: as for the store.
        assert_eq!(unsafe { load(split, Width::W8) }, HostAccess::Sigbus);
    }
}

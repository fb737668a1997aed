//! Kernel coverage of the programs this process runs, from KCOV (the lane's kernels have it;
//! the host's does not): the thread that issues the ioctls and runs the vCPU traces itself,
//! so a program's trace is the kernel code its ops reached, KVM_RUN included.
//!
//! [`Kcov`] holds two trace buffers, one per mode (a task traces into one at a time):
//! kernel PCs for every program, compared operands for the programs that found something
//! new (syzkaller's "hints" run). [`signal`] turns PCs into edges, [`guide`] keeps the
//! programs that reach new ones and mutates them, [`ranges`] says which PCs count, [`format`] holds the PCs and ranges file formats.

pub mod format;
pub mod guide;
pub mod ranges;
pub mod signal;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use gmemfuzz_backends::abi::kcov;

/// Words in the PC buffer: a program of 16 ops in the lane traces a few thousand to a few
/// hundred thousand PCs (large attribute ranges loop per GFN); a full buffer only stops
/// recording, it never fails.
const PC_WORDS: usize = 1 << 21;
/// Words in the comparison buffer (4 words a comparison).
const CMP_WORDS: usize = 1 << 20;

/// What `gmemfuzz run` (and the lane's seeded boots) do with kernel coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum KcovMode {
    /// No KCOV.
    Off,
    /// Trace each program's kernel PCs and count what was reached; programs as without.
    Collect,
    /// As collect, and keep and mutate the inputs that reach new kernel edges.
    Guide,
}

#[derive(Debug, thiserror::Error)]
pub enum KcovError {
    #[error("no KCOV here: {} is absent (a kernel without CONFIG_KCOV, or debugfs not mounted)", kcov::PATH)]
    Absent,
    #[error("KCOV: {0}")]
    Io(#[from] std::io::Error),
}

/// One KCOV file with its shared trace buffer.
struct Buffer {
    file: File,
    area: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is owned by this value; the kernel writes it only while the buffer is
// enabled on the thread that enabled it, and `Kcov` is used from one thread at a time.
unsafe impl Send for Buffer {}

impl Buffer {
    fn open(words: usize) -> Result<Buffer, KcovError> {
        let file = match OpenOptions::new().read(true).write(true).open(kcov::PATH) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KcovError::Absent),
            Err(e) => return Err(e.into()),
        };
        // SAFETY: KCOV_INIT_TRACE takes the buffer size in words by value.
        if unsafe { libc::ioctl(file.as_raw_fd(), kcov::INIT_TRACE as _, words as libc::c_ulong) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let bytes = words * std::mem::size_of::<u64>();
        // SAFETY: a fresh shared mapping of the KCOV file, of the size just set; checked below.
        let area =
            unsafe { libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if area == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        let area = NonNull::new(area.cast::<AtomicU64>()).expect("mmap never returns null on success");
        Ok(Buffer { file, area, words })
    }

    fn ioctl(&self, request: u64, arg: u64) -> Result<(), KcovError> {
        // SAFETY: KCOV_ENABLE/KCOV_DISABLE take an integer argument and touch no user memory.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg as libc::c_ulong) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `words` u64s long and lives as long as `self`; the kernel
        // writes it concurrently, hence atomics.
        unsafe { std::slice::from_raw_parts(self.area.as_ptr(), self.words) }
    }

    fn reset(&self) {
        self.words()[0].store(0, Ordering::Relaxed);
    }

    /// The words written since the last reset, after the count word.
    fn written(&self, per_record: usize) -> impl Iterator<Item = u64> + '_ {
        let words = self.words();
        let records = (words[0].load(Ordering::Relaxed) as usize).min((words.len() - 1) / per_record);
        words[1..1 + records * per_record].iter().map(|w| w.load(Ordering::Relaxed))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; nothing borrows it past `self`.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.words * std::mem::size_of::<u64>()) };
    }
}

/// A comparison the kernel made: its operands, their size in bytes, and whether one of them
/// was a constant in the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub pc: u64,
    pub args: [u64; 2],
    pub size: u8,
    pub constant: bool,
}

/// KCOV on the calling thread: PC tracing on, comparison tracing on demand.
pub struct Kcov {
    pc: Buffer,
    cmp: Option<Buffer>,
}

impl Kcov {
    /// Opens KCOV and starts tracing PCs on this thread. Comparison tracing is optional
    /// (CONFIG_KCOV_ENABLE_COMPARISONS): without it [`Kcov::comparisons`] returns nothing.
    pub fn open() -> Result<Kcov, KcovError> {
        let pc = Buffer::open(PC_WORDS)?;
        let cmp = Buffer::open(CMP_WORDS).ok();
        pc.ioctl(kcov::ENABLE, kcov::TRACE_PC)?;
        let mut kcov = Kcov { pc, cmp };
        if let Some(cmp) = kcov.cmp.take() {
            // A kernel without comparison tracing refuses KCOV_TRACE_CMP: find out now.
            kcov.pc.ioctl(kcov::DISABLE, 0)?;
            let works = cmp.ioctl(kcov::ENABLE, kcov::TRACE_CMP).is_ok();
            if works {
                cmp.ioctl(kcov::DISABLE, 0)?;
                kcov.cmp = Some(cmp);
            }
            kcov.pc.ioctl(kcov::ENABLE, kcov::TRACE_PC)?;
        }
        Ok(kcov)
    }

    /// Whether comparisons can be traced.
    pub fn has_comparisons(&self) -> bool {
        self.cmp.is_some()
    }

    /// Runs `f` and returns what it returned with the kernel PCs it reached, in order, read
    /// in place (what the kernel appends later, e.g. for a page fault of the reader, lies
    /// past them).
    pub fn pcs<R>(&self, f: impl FnOnce() -> R) -> (R, impl Iterator<Item = u64> + '_) {
        self.pc.reset();
        let r = f();
        (r, self.pc.written(1))
    }

    /// Runs `f` with comparison tracing instead of PC tracing and returns the comparisons
    /// the kernel made (none without comparison tracing).
    pub fn comparisons<R>(&self, f: impl FnOnce() -> R) -> Result<(R, Vec<Comparison>), KcovError> {
        let Some(cmp) = &self.cmp else { return Ok((f(), Vec::new())) };
        self.pc.ioctl(kcov::DISABLE, 0)?;
        cmp.ioctl(kcov::ENABLE, kcov::TRACE_CMP)?;
        cmp.reset();
        let r = f();
        let words: Vec<u64> = cmp.written(kcov::CMP_RECORD_WORDS).collect();
        cmp.ioctl(kcov::DISABLE, 0)?;
        self.pc.ioctl(kcov::ENABLE, kcov::TRACE_PC)?;
        let comparisons = words
            .chunks_exact(kcov::CMP_RECORD_WORDS)
            .map(|r| Comparison {
                pc: r[3],
                args: [r[1], r[2]],
                size: 1 << ((r[0] >> kcov::CMP_SIZE_SHIFT) & 3),
                constant: r[0] & kcov::CMP_CONST != 0,
            })
            .collect();
        Ok((r, comparisons))
    }
}

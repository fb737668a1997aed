//! A VM's binary statistics (KVM_GET_STATS_FD, Documentation/virt/kvm/api.rst "4.133"):
//! the MMU's count of mapped pages by size (x86's `pages_4k`, `pages_2m`, `pages_1g`,
//! kept by kvm_update_page_stats() in arch/x86/kvm/mmu/tdp_mmu.c and mmu.c), read after
//! ops to count huge mappings installed, dropped and recovered.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use kvm_ioctls::VmFd;

/// _IO(KVMIO, 0xce) (include/uapi/linux/kvm.h).
const KVM_GET_STATS_FD: libc::c_ulong = 0xae << 8 | 0xce;
/// The statistics read, in the order `MmuPages::pages` keeps them.
const NAMES: [&str; 3] = ["pages_4k", "pages_2m", "pages_1g"];
/// `struct kvm_stats_desc` without its name: flags, exponent, size, offset, bucket_size.
const DESC_FIXED: usize = 16;

/// A VM's statistics file and where its page counts lie in it.
pub struct VmStats {
    file: File,
    /// Byte offset in the file of each of `NAMES`' values (one u64 each).
    offsets: [u64; 3],
}

impl VmStats {
    /// Opens `vm`'s statistics; `None` where the kernel has no such file or names none of
    /// the counters (not x86, or before 5.14).
    pub fn open(vm: &VmFd) -> Option<VmStats> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
        let fd = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_GET_STATS_FD as _, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let offsets = Self::find(&file).ok()??;
        Some(VmStats { file, offsets })
    }

    /// The offsets of `NAMES` from the header and descriptors (`struct kvm_stats_header`:
    /// flags, name_size, num_desc, id_offset, desc_offset, data_offset; each u32).
    fn find(file: &File) -> io::Result<Option<[u64; 3]>> {
        let mut header = [0u8; 24];
        file.read_exact_at(&mut header, 0)?;
        let word = |i: usize| u32::from_ne_bytes(header[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize;
        let (name_size, num_desc, desc_offset, data_offset) = (word(1), word(2), word(4), word(5));
        let stride = DESC_FIXED + name_size;
        let mut descs = vec![0u8; stride * num_desc];
        file.read_exact_at(&mut descs, desc_offset as u64)?;
        let mut offsets = [None; 3];
        for desc in descs.chunks_exact(stride) {
            let name = &desc[DESC_FIXED..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == name) {
                let offset = u32::from_ne_bytes(desc[8..12].try_into().expect("4 bytes"));
                offsets[i] = Some(data_offset as u64 + u64::from(offset));
            }
        }
        Ok(offsets.iter().all(Option::is_some).then(|| offsets.map(|o| o.expect("checked"))))
    }

    /// The VM's mapped pages now, by size (4 KiB, 2 MiB, 1 GiB).
    pub fn pages(&self) -> io::Result<[u64; 3]> {
        // The three are one array in struct kvm_vm_stat (`pages[KVM_NR_PAGE_SIZES]`): one read.
        let first = *self.offsets.iter().min().expect("three");
        let mut buf = [0u8; 24];
        let span = (*self.offsets.iter().max().expect("three") - first + 8) as usize;
        if span > buf.len() {
            let mut out = [0; 3];
            for (o, &at) in out.iter_mut().zip(&self.offsets) {
                let mut v = [0u8; 8];
                self.file.read_exact_at(&mut v, at)?;
                *o = u64::from_ne_bytes(v);
            }
            return Ok(out);
        }
        self.file.read_exact_at(&mut buf[..span], first)?;
        let at = |o: u64| u64::from_ne_bytes(buf[(o - first) as usize..(o - first) as usize + 8].try_into().expect("8 bytes"));
        Ok(self.offsets.map(at))
    }
}

//! Concurrent groups on real KVM: each member on its own thread, released together by a
//! barrier; guest members each on a vCPU of their own.
//!
//! Everything a member needs is taken before the barrier (its fd, its mapping, its vCPU), and
//! skips are decided there, from the backend's state before the group, with the same checks
//! the sequential ops make: `Group::check` guarantees no member removes what another names.
//! Afterwards the backend's bookkeeping follows what the members did.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::Barrier;

use kvm_bindings::{kvm_memory_attributes, kvm_userspace_memory_region2};
use kvm_ioctls::{VcpuFd, VmFd};

use super::hostmem::{self, HostAccess, Mapping};
use super::vcpu::{self, MailboxView};
use super::{errno, guest, io_errno, resource, KvmBackend};
use crate::abi::{self, layout, mailbox};
use crate::backend::HarnessError;
use crate::group::Group;
use crate::model::reachable;
use crate::op::{Access, AccessKind, Op, Width};
use crate::outcome::{AccessResult, Outcome, SkipReason};

/// A host address a member's thread may access.
#[derive(Clone, Copy)]
struct HostAddr(*mut u8);

// SAFETY: the address lies in a mapping the backend keeps alive until the group's threads
// have joined (scoped threads; no member of the group unmaps it: `Group::check`).
unsafe impl Send for HostAddr {}

/// What one member's thread does, with what it needs.
enum Job {
    /// Not sent: every repetition answers this.
    Skip(SkipReason),
    /// Fault injection (`KvmBackend::skip_silently`): answered `Ok`, not done.
    Pretend,
    Guest {
        vcpu: usize,
        accesses: Vec<Access>,
    },
    Fallocate {
        fd: libc::c_int,
        mode: i32,
        offset: u64,
        len: u64,
    },
    Close(OwnedFd),
    Unmap(Mapping),
    Unbind {
        slot: u32,
    },
    Attributes {
        gpa: u64,
        size: u64,
        attributes: u64,
    },
    Host {
        addr: HostAddr,
        width: Width,
        store: Option<u64>,
    },
}

/// A member that answered without a thread, or its thread.
enum Member<'s> {
    Done(Vec<Outcome>),
    Running(std::thread::ScopedJoinHandle<'s, Result<(Vec<Outcome>, Leftovers), HarnessError>>),
}

/// What a member's thread brings back besides its outcomes.
#[derive(Default)]
struct Leftovers {
    mmio_gfns: BTreeSet<u64>,
    retired: Option<Mapping>,
}

impl KvmBackend {
    /// Runs a group (see `crate::group`).
    pub(super) fn group(&mut self, group: &Group) -> Result<Outcome, HarnessError> {
        if group.check().is_err() {
            return Ok(Outcome::Skipped(SkipReason::InvalidGroup));
        }
        let guests = group.members.iter().filter(|m| matches!(m.op, Op::Guest { .. })).count();
        self.ensure_vcpus(guests)?;
        // Skips first, from the state before the group; then what each member takes.
        let mut jobs = Vec::with_capacity(group.members.len());
        let mut next_vcpu = 0;
        for m in &group.members {
            jobs.push(self.job(&m.op, &mut next_vcpu));
        }
        let jobs: Vec<Job> = jobs.into_iter().zip(&group.members).map(|(j, m)| j.unwrap_or_else(|_| self.take(&m.op))).collect();
        let results = self.run_jobs(jobs, group)?;
        let mut out = Vec::with_capacity(results.len());
        for ((outcomes, leftovers), m) in results.into_iter().zip(&group.members) {
            self.mmio_gfns.extend(leftovers.mmio_gfns);
            if let Some(reserved) = leftovers.retired {
                self.retired.push(reserved);
            }
            self.follow(&m.op, &outcomes);
            out.push(outcomes);
        }
        Ok(Outcome::Group(out))
    }

    /// Makes vCPUs until the VM has `n` (vCPU 0 always exists).
    fn ensure_vcpus(&mut self, n: usize) -> Result<(), HarnessError> {
        if let Some(vm) = self.vm.as_mut() {
            while vm.extra.len() + 1 < n {
                let id = vm.extra.len() as u64 + 1;
                vm.extra.push(vcpu::create(&vm.fd, id)?);
            }
        }
        Ok(())
    }

    /// The job of a member that needs nothing taken from the backend, or `Err(())` for one
    /// that does (`take`, once every skip is decided).
    fn job(&self, op: &Op, next_vcpu: &mut usize) -> Result<Job, ()> {
        let job = self.job_unless_pretended(op, next_vcpu);
        // Fault injection pretends to do what would have been sent (the runner never sends
        // a skipped op, so the sequential path pretends only where the model does not skip).
        match job {
            Ok(Job::Skip(why)) => Ok(Job::Skip(why)),
            _ if self.skipped == Some(op.kind()) => Ok(Job::Pretend),
            other => other,
        }
    }

    fn job_unless_pretended(&self, op: &Op, next_vcpu: &mut usize) -> Result<Job, ()> {
        Ok(match *op {
            Op::Guest { ref accesses } => {
                if self.vm.is_none() {
                    return Ok(Job::Skip(SkipReason::NoVm));
                }
                if !accesses.iter().all(reachable) {
                    return Ok(Job::Skip(SkipReason::UnreachableGpa));
                }
                *next_vcpu += 1;
                Job::Guest { vcpu: *next_vcpu - 1, accesses: accesses.clone() }
            }
            Op::Punch { gmem, offset, len } => match self.gmem_fd(gmem) {
                Ok(fd) => Job::Fallocate { fd, mode: abi::falloc::PUNCH, offset, len },
                Err(why) => Job::Skip(why),
            },
            Op::Allocate { gmem, mode, offset, len } => match self.gmem_fd(gmem) {
                Ok(fd) => Job::Fallocate { fd, mode, offset, len },
                Err(why) => Job::Skip(why),
            },
            Op::CloseGmem { gmem } => match self.gmem(gmem) {
                Err(why) => Job::Skip(why),
                Ok(h) if h.fd.is_none() => Job::Skip(SkipReason::FdClosed),
                Ok(_) => return Err(()),
            },
            Op::Unmap { gmem } => match self.gmem(gmem) {
                Err(why) => Job::Skip(why),
                Ok(h) if h.map.is_none() => Job::Skip(SkipReason::NotMapped),
                Ok(_) => return Err(()),
            },
            Op::Unbind { slot } => match () {
                _ if self.vm.is_none() => Job::Skip(SkipReason::NoVm),
                _ if slot < layout::HARNESS_SLOTS => Job::Skip(SkipReason::ReservedSlot),
                _ => Job::Unbind { slot },
            },
            Op::SetAttributes { gpa, size, attributes } => match self.vm {
                None => Job::Skip(SkipReason::NoVm),
                Some(_) => Job::Attributes { gpa, size, attributes },
            },
            Op::HostRead { gmem, offset, width } => self.host_job(gmem, offset, width, None),
            Op::HostWrite { gmem, offset, width, value } => self.host_job(gmem, offset, width, Some(value)),
            _ => unreachable!("Group::check admits no {:?}", op.kind()),
        })
    }

    fn host_job(&self, gmem: crate::op::GmemId, offset: u64, width: Width, store: Option<u64>) -> Job {
        match self.host_addr(gmem, offset, width) {
            Ok(addr) => Job::Host { addr: HostAddr(addr), width, store },
            Err(why) => Job::Skip(why),
        }
    }

    /// Takes the fd or mapping a close or munmap member removes.
    fn take(&mut self, op: &Op) -> Job {
        match *op {
            Op::CloseGmem { gmem } => Job::Close(self.gmem_mut(gmem).and_then(|g| g.fd.take()).expect("checked by `job`")),
            Op::Unmap { gmem } => Job::Unmap(self.gmem_mut(gmem).and_then(|g| g.map.take()).expect("checked by `job`")),
            _ => unreachable!("`job` takes nothing from {:?}", op.kind()),
        }
    }

    /// Runs the jobs on threads released together, each repeated as its member says.
    fn run_jobs(&mut self, jobs: Vec<Job>, group: &Group) -> Result<Vec<(Vec<Outcome>, Leftovers)>, HarnessError> {
        let mailboxes: Vec<MailboxView> = (0..vcpu::MAX_VCPUS).map(|i| self.mailbox_of(i)).collect();
        let running = jobs.iter().filter(|j| !matches!(j, Job::Skip(_) | Job::Pretend)).count();
        let barrier = Barrier::new(running);
        let mut vm_fd: Option<&VmFd> = None;
        let mut vcpus: Vec<Option<&mut VcpuFd>> = Vec::new();
        if let Some(vm) = self.vm.as_mut() {
            vm_fd = Some(&vm.fd);
            vcpus.push(Some(&mut vm.vcpu));
            vcpus.extend(vm.extra.iter_mut().map(Some));
        }
        std::thread::scope(|s| {
            let mut handles = Vec::with_capacity(jobs.len());
            for (job, m) in jobs.into_iter().zip(&group.members) {
                let repeat = m.repeat as usize;
                let (barrier, vm_fd) = (&barrier, vm_fd);
                let vcpu = match &job {
                    Job::Guest { vcpu, .. } => Some(vcpus[*vcpu].take().expect("one member per vCPU")),
                    _ => None,
                };
                let mb = match &job {
                    Job::Guest { vcpu, .. } => Some(mailboxes[*vcpu]),
                    _ => None,
                };
                handles.push(match job {
                    Job::Skip(why) => Member::Done(vec![Outcome::Skipped(why); repeat]),
                    Job::Pretend => Member::Done(vec![Outcome::Ok; repeat]),
                    job => Member::Running(s.spawn(move || {
                        barrier.wait();
                        run_job(job, repeat, vm_fd, vcpu, mb)
                    })),
                });
            }
            handles
                .into_iter()
                .map(|h| match h {
                    Member::Done(outcomes) => Ok((outcomes, Leftovers::default())),
                    Member::Running(h) => h.join().map_err(|_| HarnessError::Bug("a group member's thread panicked".into()))?,
                })
                .collect()
        })
    }

    /// The backend's bookkeeping after a member: what the sequential op would have noted.
    fn follow(&mut self, op: &Op, outcomes: &[Outcome]) {
        let ok = outcomes.contains(&Outcome::Ok);
        match *op {
            Op::Unbind { slot } if ok => {
                self.slots.remove(&slot);
            }
            Op::SetAttributes { gpa, size, attributes } if ok && attributes != 0 => self.attributed.push((gpa, size)),
            _ => {}
        }
    }
}

/// One member's repetitions on its thread.
fn run_job(
    job: Job,
    repeat: usize,
    vm: Option<&VmFd>,
    vcpu: Option<&mut VcpuFd>,
    mb: Option<MailboxView>,
) -> Result<(Vec<Outcome>, Leftovers), HarnessError> {
    let mut left = Leftovers::default();
    let mut outcomes = Vec::with_capacity(repeat);
    match job {
        Job::Guest { accesses, .. } => {
            let (vcpu, mb) = (vcpu.expect("a guest job has a vCPU"), mb.expect("and a mailbox"));
            let commands: Vec<_> = accesses
                .iter()
                .map(|a| match a.kind {
                    AccessKind::Read => (guest::access_code(a.width, false), a.gpa, 0),
                    AccessKind::Write(v) => (guest::access_code(a.width, true), a.gpa, v),
                })
                .collect();
            for _ in 0..repeat {
                let exits = vcpu::run_commands(vcpu, mb, &commands, true, &mut left.mmio_gfns)?;
                let results = accesses
                    .iter()
                    .enumerate()
                    .map(|(i, a)| match exits[i] {
                        Some(exit) => exit,
                        None => match a.kind {
                            AccessKind::Read => AccessResult::Read(a.width.truncate(mb.read(mailbox::command(i, mailbox::CMD_VALUE), 8))),
                            AccessKind::Write(_) => AccessResult::Wrote,
                        },
                    })
                    .collect();
                outcomes.push(Outcome::Guest(results));
            }
        }
        Job::Fallocate { fd, mode, offset, len } => {
            for _ in 0..repeat {
                // SAFETY: fd is a guest_memfd the backend owns and no member closes (Group::check);
                // fallocate takes no pointers.
                let rc = unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) };
                outcomes.push(if rc == 0 { Outcome::Ok } else { io_errno(std::io::Error::last_os_error()) });
            }
        }
        Job::Close(fd) => {
            // close() of a valid fd does not fail; the file's release, if this was its last
            // reference, runs in it.
            drop(fd);
            outcomes.push(Outcome::Ok);
        }
        Job::Unmap(map) => {
            left.retired = Some(map.retire().map_err(|e| resource("munmap", e))?);
            outcomes.push(Outcome::Ok);
        }
        Job::Unbind { slot } => {
            let vm = vm.expect("checked by `job`");
            for _ in 0..repeat {
                let region = kvm_userspace_memory_region2 { slot, ..Default::default() };
                // SAFETY: deleting a slot (memory_size 0) hands KVM no memory.
                outcomes.push(match unsafe { vm.set_user_memory_region2(region) } {
                    Ok(()) => Outcome::Ok,
                    Err(e) => errno(e),
                });
            }
        }
        Job::Attributes { gpa, size, attributes } => {
            let vm = vm.expect("checked by `job`");
            for _ in 0..repeat {
                let attrs = kvm_memory_attributes { address: gpa, size, attributes, flags: 0 };
                outcomes.push(match vm.set_memory_attributes(attrs) {
                    Ok(()) => Outcome::Ok,
                    Err(e) => errno(e),
                });
            }
        }
        Job::Host { addr, width, store } => {
            for _ in 0..repeat {
                // SAFETY: the address is inside a live mapping for the whole group (HostAddr).
                let result = unsafe {
                    match store {
                        None => hostmem::load(addr.0, width),
                        Some(v) => hostmem::store(addr.0, width, v),
                    }
                };
                outcomes.push(match (result, store) {
                    (HostAccess::Sigbus, _) => Outcome::Sigbus,
                    (HostAccess::Done(v), None) => Outcome::Value(v),
                    (HostAccess::Done(_), Some(_)) => Outcome::Ok,
                });
            }
        }
        Job::Skip(_) | Job::Pretend => unreachable!("not run on a thread"),
    }
    Ok((outcomes, left))
}

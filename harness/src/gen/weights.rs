//! How often each op kind is drawn: one table of rates, shaped by what the kernel under
//! test offers (its `Profile`), and the swarm of kinds one program may use.

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::op::{Uses, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP};
use gmemfuzz_backends::{OpKind, Profile};

/// Relative rates of the op kinds: the only table generation draws kinds from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpWeights([u32; OpKind::ALL.len()]);

/// The rate of an op the kernel lacks: drawn now and then, so that the refusal itself
/// stays checked, but not at full rate.
pub const RARE: u32 = 1;

/// The rate of a host access where every one must be SIGBUS.
pub const SIGBUS_ONLY: u32 = 2;

impl OpWeights {
    /// Rates for a kernel that offers everything the ops use: the op table's
    /// (`OpSpec::rate`, with the reason for each low one there).
    pub fn base() -> OpWeights {
        let mut w = OpWeights([0; OpKind::ALL.len()]);
        for kind in OpKind::ALL {
            w.set(kind, kind.spec().rate);
        }
        w
    }

    /// The base rates, with ops the kernel lacks made rare: KVM_SET_MEMORY_ATTRIBUTES where
    /// the ioctl is missing (ENOTTY, 6.18 without CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES) or
    /// the VM supports no attribute; host mappings and accesses where no file can be
    /// mapped (no GUEST_MEMFD_FLAG_MMAP: mmap fails with ENODEV, accesses are skipped);
    /// everything about guest_memfd where the VM has none.
    pub fn for_profile(profile: &Profile) -> OpWeights {
        let mut w = Self::base();
        if !profile.attributes_ioctl || profile.attributes == 0 {
            w.set(OpKind::SetAttributes, RARE);
        }
        if profile.gmem_flags & GUEST_MEMFD_FLAG_MMAP == 0 {
            for kind in OpKind::ALL.into_iter().filter(|&k| k == OpKind::Map || k.spec().uses == Uses::Mapping) {
                w.set(kind, RARE);
            }
        } else if profile.gmem_flags & GUEST_MEMFD_FLAG_INIT_SHARED == 0 {
            // Files can be mapped, but no file can start shared (7.2 on a VM with private
            // memory): every host access is SIGBUS (kvm_gmem_fault_user_mapping()), a
            // rule worth checking now and then, not at full rate.
            for kind in [OpKind::HostRead, OpKind::HostWrite] {
                w.set(kind, SIGBUS_ONLY);
            }
        }
        if profile.numa.nodes == 0 {
            // Without CONFIG_NUMA both calls are ENOSYS.
            for kind in [OpKind::Mbind, OpKind::GetMempolicy] {
                w.set(kind, RARE);
            }
        }
        if !profile.guest_memfd {
            for kind in OpKind::ALL.into_iter().filter(|&k| k != OpKind::Map && k.spec().uses == Uses::Fd) {
                w.set(kind, RARE);
            }
        }
        w
    }

    pub fn get(&self, kind: OpKind) -> u32 {
        self.0[kind as usize]
    }

    pub fn set(&mut self, kind: OpKind, rate: u32) {
        self.0[kind as usize] = rate;
    }

    /// Draws a kind among those `swarm` enables, by rate; `None` if none has a rate.
    pub fn draw(&self, u: &mut Unstructured, swarm: &Swarm) -> Result<Option<OpKind>> {
        let total: u32 = OpKind::ALL.iter().filter(|k| swarm.enabled(**k)).map(|k| self.get(*k)).sum();
        if total == 0 {
            return Ok(None);
        }
        let mut pick = u.int_in_range(0..=total - 1)?;
        for kind in OpKind::ALL.into_iter().filter(|k| swarm.enabled(*k)) {
            if pick < self.get(kind) {
                return Ok(Some(kind));
            }
            pick -= self.get(kind);
        }
        unreachable!("pick < total")
    }
}

/// Swarm testing (wasmtime `generators/api.rs` `Swarm`): each program enables a random
/// subset of op kinds, so programs specialise (many binds and modifies and no closes, say)
/// and reach states a uniform mix dilutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swarm([bool; OpKind::ALL.len()]);

impl Swarm {
    pub fn all() -> Swarm {
        Swarm([true; OpKind::ALL.len()])
    }

    /// One program in eight uses every kind; the others each kind with odds 2/3. Files
    /// are always made: nothing else reaches the kernel without them.
    pub fn draw(u: &mut Unstructured) -> Result<Swarm> {
        let mut swarm = Swarm::all();
        if u.ratio(1u8, 8)? {
            return Ok(swarm);
        }
        for kind in OpKind::ALL {
            // Groups are not drawn (their rate alone decides them): with their rate at 0 the
            // swarm, and so every program, is what it was before groups existed.
            if kind != OpKind::Group {
                swarm.0[kind as usize] = kind == OpKind::CreateGmem || u.ratio(2u8, 3)?;
            }
        }
        Ok(swarm)
    }

    pub fn enabled(&self, kind: OpKind) -> bool {
        self.0[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_discriminants_index_the_table() {
        for (i, kind) in OpKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        assert!(OpKind::ALL.iter().all(|k| OpWeights::base().get(*k) > 0), "every kind has a base rate");
    }

    #[test]
    fn missing_ioctls_and_mmap_are_rare() {
        let host = OpWeights::for_profile(&Profile::host_6_18());
        assert_eq!(host.get(OpKind::SetAttributes), RARE, "6.18 host: no KVM_SET_MEMORY_ATTRIBUTES");
        assert_eq!(host.get(OpKind::Map), OpWeights::base().get(OpKind::Map));
        let lane = OpWeights::for_profile(&Profile::sw_protected_6_12());
        assert_eq!(lane.get(OpKind::SetAttributes), OpWeights::base().get(OpKind::SetAttributes));
        assert_eq!(lane.get(OpKind::HostWrite), RARE, "6.12: guest_memfd has no mmap");
        let lane_7_2 = OpWeights::for_profile(&Profile::sw_protected_7_2());
        assert_eq!(lane_7_2.get(OpKind::Map), OpWeights::base().get(OpKind::Map), "7.2: VM type 1 files can be mapped");
        assert_eq!(lane_7_2.get(OpKind::HostRead), SIGBUS_ONLY, "7.2: no INIT_SHARED on VM type 1, every host access is SIGBUS");
    }
}

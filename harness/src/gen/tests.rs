//! Properties of generation (cloud-hypervisor style): over many seeded programs, the
//! generator reaches each corner the kernel checks, at rates the profile sets.

use super::*;
use crate::program::Program;
use crate::runner::Runner;
use crate::stats::Reach;
use gmemfuzz_backends::model::Model;
use rand::{Rng, RngCore, SeedableRng};

fn programs(profile: &Profile, n: usize) -> Vec<Program> {
    Program::seeded(3, 24, profile).take(n).collect()
}

/// What 1000 seeded programs reach, run on the model against itself (once per test binary).
fn reach() -> &'static Reach {
    static REACH: std::sync::OnceLock<Reach> = std::sync::OnceLock::new();
    REACH.get_or_init(|| {
        let mut runner = Runner::new(Model::new(Profile::host_6_18()));
        for p in programs(&Profile::host_6_18(), 1000) {
            runner.run(&p).expect("the model agrees with itself");
        }
        eprintln!("{}", runner.stats);
        runner.stats.reach.clone()
    })
}

#[test]
fn generation_reaches_every_op_kind() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let mut bytes = vec![0u8; 512];
        rng.fill_bytes(&mut bytes);
        if let Some(p) = Program::from_bytes(&bytes) {
            seen.extend(p.ops.iter().map(Op::kind));
        }
    }
    let missing: Vec<_> = OpKind::ALL.iter().filter(|k| !seen.contains(k)).collect();
    assert!(missing.is_empty(), "op kinds never generated: {missing:?}");
}

#[test]
fn modify_slot_moves_and_reflags_plain_and_guest_memfd_slots() {
    let reach = reach();
    assert!(reach.moves.ok >= 20, "plain slots moved: {reach}");
    assert!(reach.flags_only.ok >= 10, "flags-only changes: {reach}");
    let [dirty, readonly, gmem] = [0, 1, 2];
    assert!(reach.flag_add[dirty].ok > 0 && reach.flag_drop[dirty].ok > 0, "{reach}");
    // READONLY and GUEST_MEMFD changes are tried and always refused (kvm_main.c:
    // `(mem->flags ^ old->flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD)`).
    for flag in [readonly, gmem] {
        assert!(reach.flag_add[flag].tried > 0 && reach.flag_drop[flag].tried > 0, "{reach}");
        assert_eq!(reach.flag_add[flag].ok + reach.flag_drop[flag].ok, 0, "{reach}");
    }
}

#[test]
fn binds_reach_hugepage_alignment_and_second_bindings() {
    let reach = reach();
    assert!(reach.binds_2m.ok >= 20, "{reach}");
    assert!(reach.binds_1g.ok > 0, "{reach}");
    assert!(reach.second_bindings.ok > 0 && reach.second_bindings.ok < reach.second_bindings.tried, "disjoint and overlapping: {reach}");
}

/// Whole 2 MiB conversions and pre-faults of huge slots (issue 23): on a profile with
/// private memory, where set_attributes is drawn at its full rate.
#[test]
fn conversions_and_pre_faults_cover_whole_hugepages() {
    let (mut attrs, mut pre_faults) = (0, 0);
    for p in programs(&Profile::sw_protected_7_2(), 1000) {
        for op in &p.ops {
            match *op {
                Op::SetAttributes { gpa, size, .. } if gpa % values::HUGE_2M == 0 && size == values::HUGE_2M => attrs += 1,
                Op::PreFault { gpa, size } if gpa % values::HUGE_2M == 0 && size == values::HUGE_2M => pre_faults += 1,
                _ => {}
            }
        }
    }
    assert!(attrs >= 15 && pre_faults >= 10, "whole 2 MiB set_attributes {attrs}, pre_fault {pre_faults}");
}

/// Groups where a guest member faults a page of a huge slot while another member converts
/// the rest of its 2 MiB page (the race 9129633d568e closed): they are drawn, and the guest
/// member's page is never among those converted.
#[test]
fn groups_convert_the_rest_of_a_hugepage_beside_a_faulting_guest() {
    let mut seen = 0;
    for p in programs(&Profile::sw_protected_7_2(), 3000) {
        for op in &p.ops {
            let Op::Group(group) = op else { continue };
            for m in &group.members {
                let Op::SetAttributes { gpa, size, .. } = m.op else { continue };
                if size < 64 * PAGE_SIZE || (gpa + size) % values::HUGE_2M != 0 && gpa % values::HUGE_2M != 0 {
                    continue;
                }
                let guest_pages: Vec<u64> = group
                    .members
                    .iter()
                    .filter_map(|g| match &g.op {
                        Op::Guest { accesses } => Some(accesses.iter().map(|a| a.gpa / PAGE_SIZE * PAGE_SIZE)),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                assert!(guest_pages.iter().all(|&g| g < gpa || g >= gpa + size), "{}", crate::repro::print(&p));
                assert!(guest_pages.iter().any(|&g| g / values::HUGE_2M == gpa / values::HUGE_2M), "{}", crate::repro::print(&p));
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "groups converting the rest of a hugepage: {seen}");
}

#[test]
fn values_sit_on_both_sides_of_the_wraps() {
    let (mut gpa_wraps, mut offset_wraps, mut sign, mut below_sign) = (0, 0, 0, 0);
    for p in programs(&Profile::host_6_18(), 1000) {
        for op in &p.ops {
            match *op {
                Op::Bind { gpa, size, offset, .. } => {
                    gpa_wraps += gpa.checked_add(size).is_none() as u32;
                    offset_wraps += offset.checked_add(size).is_none() as u32;
                }
                Op::Punch { offset, len, .. } | Op::Allocate { offset, len, .. } => {
                    let sum = offset.wrapping_add(len);
                    sign += (sum == 1 << 63) as u32;
                    below_sign += (sum == i64::MAX as u64 & !(PAGE_SIZE - 1)) as u32;
                }
                _ => {}
            }
        }
    }
    for (what, n) in [("gpa + size wraps", gpa_wraps), ("offset + size wraps", offset_wraps), ("2^63", sign), ("below 2^63", below_sign)] {
        assert!(n > 0, "{what}: never generated");
    }
}

#[test]
fn op_rates_follow_the_profile() {
    let share = |profile: &Profile| {
        let ps = programs(profile, 500);
        let all: usize = ps.iter().map(|p| p.ops.len()).sum();
        let attrs = ps.iter().flat_map(|p| &p.ops).filter(|op| op.kind() == OpKind::SetAttributes).count();
        attrs as f64 / all as f64
    };
    let (host, lane) = (share(&Profile::host_6_18()), share(&Profile::sw_protected_6_12()));
    assert!(host > 0.0, "an op the kernel lacks is still drawn now and then");
    assert!(host * 3.0 < lane, "set_attributes: {host:.4} of ops on 6.18 (ENOTTY) vs {lane:.4} on 6.12");
}

#[test]
fn the_weights_table_sets_the_rates() {
    let mut weights = OpWeights::for_profile(&Profile::host_6_18());
    weights.set(OpKind::ModifySlot, 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut bytes = vec![0u8; 4096];
    for _ in 0..200 {
        rng.fill_bytes(&mut bytes);
        let mut g = Generator::new(&Profile::host_6_18()).with_weights(weights.clone());
        let ops = g.ops(&mut Unstructured::new(&bytes), 32).unwrap();
        assert!(!ops.iter().any(|op| op.kind() == OpKind::ModifySlot), "{ops:?}");
    }
}

#[test]
fn swarm_specialises_programs() {
    let ps = programs(&Profile::host_6_18(), 500);
    let kinds = |p: &Program| p.ops.iter().map(Op::kind).collect::<std::collections::BTreeSet<_>>();
    let without_guest = ps.iter().filter(|p| !kinds(p).contains(&OpKind::Guest)).count();
    // With every kind on, 24 ops miss guest (20% of draws) in about 0.5% of programs.
    assert!(without_guest > 50, "{without_guest} of 500 programs without guest accesses");
}

/// On 7.2's VM type 1 (as its code reads: `Profile::sw_protected_7_2`), programs map files,
/// make memory private and reach guest_memfd-only slots through shared GFNs.
#[test]
fn private_vm_on_7_2_reaches_mappings_attributes_and_gmem_only_slots() {
    let profile = Profile::sw_protected_7_2();
    let mut runner = Runner::new(Model::new(profile.clone()));
    for p in programs(&profile, 500) {
        runner.run(&p).expect("the model agrees with itself");
    }
    let stats = &runner.stats;
    eprintln!("{stats}");
    let ok = |kind: OpKind| {
        let (ran, _) = stats.ops.get(&kind).copied().unwrap_or_default();
        ran - stats.errors.get(&kind).copied().unwrap_or_default()
    };
    assert!(ok(OpKind::Map) >= 50, "maps of VM type 1 files: {stats}");
    assert!(ok(OpKind::SetAttributes) >= 50, "successful set_attributes: {stats}");
    assert!(stats.reach.gmem_only_accesses.ok >= 50, "guest accesses through guest_memfd-only slots: {stats}");
}

#[test]
fn groups_race_on_shared_objects_and_run_clean_on_every_profile() {
    for profile in [Profile::host_6_18(), Profile::sw_protected_6_12(), Profile::sw_protected_7_2()] {
        let mut runner = Runner::new(Model::new(profile.clone()));
        let (mut groups, mut attributes, mut shared) = (0, 0, 0);
        for p in programs(&profile, 150) {
            runner.run(&p).unwrap_or_else(|e| panic!("{}: the model agrees with itself: {e}", profile.kernel));
            for op in &p.ops {
                let Op::Group(g) = op else { continue };
                assert_eq!(g.check(), Ok(()), "generated groups can run");
                groups += 1;
                attributes += g.members.iter().any(|m| matches!(m.op, Op::SetAttributes { .. })) as u32;
                // Members meet: a guest loop and another member on the same page or file.
                let pages: Vec<u64> = g
                    .members
                    .iter()
                    .filter_map(|m| match &m.op {
                        Op::Guest { accesses } => Some(accesses[0].gpa / PAGE_SIZE),
                        _ => None,
                    })
                    .collect();
                shared += (pages.len() >= 2 && pages.windows(2).all(|w| w[0] == w[1])
                    || g.members.iter().any(|m| m.op.gmem().is_some() || matches!(m.op, Op::Unbind { .. })))
                    as u32;
            }
        }
        assert!(groups >= 25, "{}: {groups} groups in 150 programs", profile.kernel);
        assert!(shared * 10 >= groups * 8, "{}: {shared} of {groups} groups meet on a page, file or slot", profile.kernel);
        assert_eq!(attributes > 0, profile.attributes != 0, "{}: set_attributes races where the kernel has attributes", profile.kernel);
        assert!(runner.stats.races.groups > 0 && runner.stats.races.inconclusive == 0, "{}", runner.stats);
    }
}

/// Seeded inputs are a swarm header and a chunk per op (`Program::from_seeded_input`): no
/// op reads past its chunk (it would read zeros, a skewed draw), and an op depends only on
/// its own chunk and the ops before it, which guided mutation relies on.
#[test]
fn seeded_ops_fit_their_chunks_and_depend_on_earlier_ops_only() {
    let profile = Profile::sw_protected_7_2();
    let weights = OpWeights::for_profile(&profile);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut most = 0;
    for _ in 0..2000 {
        let mut bytes = vec![0u8; Program::seeded_input_len(16)];
        rng.fill_bytes(&mut bytes);
        let mut u = Unstructured::new(&bytes[..Program::SWARM_BYTES]);
        let mut g = Generator::new(&profile);
        g.draw_swarm(&mut u).unwrap();
        assert!(!u.is_empty(), "the swarm ran out of its header");
        let mut ops = Vec::new();
        for i in 0..16 {
            let chunk = &bytes[Program::SWARM_BYTES + i * Program::OP_BYTES..][..Program::OP_BYTES];
            let mut u = Unstructured::new(chunk);
            ops.push(g.op(&mut u).unwrap());
            most = most.max(chunk.len() - u.len());
        }
        let program = Program::from_seeded_input(&bytes, 16, &profile, &weights);
        assert_eq!(program.ops, ops, "each op is read from its own chunk");
        let k = rng.random_range(0..16);
        let chunk = Program::SWARM_BYTES + k * Program::OP_BYTES;
        rng.fill_bytes(&mut bytes[chunk..chunk + Program::OP_BYTES]);
        let changed = Program::from_seeded_input(&bytes, 16, &profile, &weights);
        assert_eq!(program.ops[..k], changed.ops[..k], "op {k} changed: the ops before it must not");
    }
    assert!(most < Program::OP_BYTES, "an op read {most} bytes: its chunk ran out");
    eprintln!("the most bytes one op read: {most} of {}", Program::OP_BYTES);
}

//! Throwaway: the scenario files give exactly the (op, expected outcome) lists the Rust
//! scenarios gave, per profile: the assumed profiles and variants of each in every field a
//! scenario depends on. Deleted with the Rust scenarios.
use gmemfuzz::scenarios::{self, rust};
use gmemfuzz_backends::op::{GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED, GUEST_MEMFD_FLAG_MMAP as MMAP};
use gmemfuzz_backends::outcome::Errno;
use gmemfuzz_backends::Profile;

fn variants() -> Vec<Profile> {
    let mut all = Vec::new();
    for base in rust::assumed_profiles() {
        all.push(base.clone());
        for vm_type in [0, 1] {
            for gmem_flags in [0, MMAP, INIT_SHARED, MMAP | INIT_SHARED] {
                for gmem_only_slots in [false, true] {
                    for attributes_ioctl in [false, true] {
                        for bound_range_errno in [Errno::EINVAL, Errno::EEXIST] {
                            for nodes in [0u64, 1, 2, 3, 0b101] {
                                for file_policy in [false, true] {
                                    for move_all in [false, true] {
                                        let mut p = base.clone();
                                        p.vm_type = vm_type;
                                        p.gmem_flags = gmem_flags;
                                        p.gmem_only_slots = gmem_only_slots;
                                        p.attributes_ioctl = attributes_ioctl;
                                        p.bound_range_errno = bound_range_errno;
                                        p.numa.nodes = nodes;
                                        p.numa.file_policy = file_policy;
                                        p.numa.move_all = move_all;
                                        all.push(p);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn files_give_what_the_rust_scenarios_gave() {
    let profiles = variants();
    let (mut scenarios_compared, mut steps_compared) = (0, 0);
    for p in &profiles {
        let old = rust::for_profile(p);
        let new = scenarios::for_profile(p);
        let mut old_names: Vec<&str> = old.iter().map(|s| s.name).collect();
        let mut new_names: Vec<&str> = new.iter().map(|s| s.name.as_str()).collect();
        old_names.sort();
        new_names.sort();
        assert_eq!(old_names, new_names, "scenarios made for {}", p.summary());
        for o in &old {
            let n = new.iter().find(|n| n.name == o.name).unwrap();
            assert_eq!(o.source, n.source, "{}", o.name);
            assert_eq!(o.steps.len(), n.steps.len(), "{} on {}", o.name, p.summary());
            for (i, (a, b)) in o.steps.iter().zip(&n.steps).enumerate() {
                assert_eq!(a, b, "{} step {i} (line {}) on {}", o.name, n.lines[i], p.summary());
            }
            scenarios_compared += 1;
            steps_compared += o.steps.len();
        }
    }
    eprintln!(
        "EQUIVALENT: {} profiles, {scenarios_compared} (profile, scenario) pairs, {steps_compared} (op, outcome) steps identical",
        profiles.len()
    );
}

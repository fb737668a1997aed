//! Concurrent groups on real KVM (skipped loudly without /dev/kvm): a guest read racing a
//! punch of its page sees only what some order allows, and a backend that answers a value
//! no order allows is caught.

mod common;

use gmemfuzz::oracle::Subject;
use gmemfuzz::runner::RunError;
use gmemfuzz::{Program, Runner};
use gmemfuzz_backends::op::{layout, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD, PAGE_SIZE as P};
use gmemfuzz_backends::outcome::{AccessResult, Observation, Probe};
use gmemfuzz_backends::{Access, AccessKind, Backend, FdArg, GmemId, Group, HarnessError, Member, Op, Outcome, Profile, Width};

const G0: GmemId = GmemId(0);
const GPA: u64 = layout::WINDOW_GPA;
const OLD: u64 = 0x1122_3344_5566_7788;
const READS: u8 = 40;

/// A bound, mapped file whose first qword holds `OLD`; then a guest loop reading it, racing
/// a punch of its page; then a check.
fn read_racing_punch() -> Program {
    let read = Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W8, kind: AccessKind::Read }] };
    Program::new(vec![
        Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
        Op::Map { gmem: G0 },
        Op::Bind { slot: layout::FIRST_PROGRAM_SLOT, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: 2 * P, offset: 0 },
        Op::HostWrite { gmem: G0, offset: 0, width: Width::W8, value: OLD },
        Op::Group(Group {
            members: vec![Member { op: read, repeat: READS }, Member { op: Op::Punch { gmem: G0, offset: 0, len: P }, repeat: 1 }],
        }),
        Op::Check,
    ])
}

#[test]
fn a_read_racing_a_punch_sees_old_or_zero_over_many_runs() {
    let Some(backend) = common::kvm_or_skip("a_read_racing_a_punch_sees_old_or_zero_over_many_runs") else { return };
    let program = read_racing_punch();
    let mut runner = Runner::new(backend);
    let (mut saw_old, mut saw_zero, mut mixed) = (0, 0, 0);
    for run in 0..100 {
        let trace = runner.run(&program).unwrap_or_else(|e| panic!("run {run}: {e}"));
        let Outcome::Group(members) = &trace.outcomes[4] else { panic!("run {run}: the group answered {:?}", trace.outcomes[4]) };
        let values: Vec<u64> = members[0]
            .iter()
            .map(|o| match o {
                Outcome::Guest(r) => match r[..] {
                    [AccessResult::Read(v)] => v,
                    ref other => panic!("run {run}: {other:?}"),
                },
                other => panic!("run {run}: {other}"),
            })
            .collect();
        // The allowed set, checked here as well as by the runner: the old value (possibly
        // its low half with a zero high half: the guest loads 8 bytes as two halves), then
        // zero for good.
        let first_zero = values.iter().position(|v| *v != OLD).unwrap_or(values.len());
        assert!(
            values[first_zero..].iter().skip(1).all(|v| *v == 0)
                && values[first_zero..].first().is_none_or(|v| *v == 0 || *v == OLD & 0xffff_ffff),
            "run {run}: {values:x?}"
        );
        saw_old += usize::from(values[0] == OLD);
        saw_zero += usize::from(values.last() == Some(&0));
        mixed += usize::from(values[0] == OLD && values.last() == Some(&0));
    }
    eprintln!("read racing punch: 100 runs, first read old in {saw_old}, last read zero in {saw_zero}, both in {mixed}");
    assert_eq!(runner.stats.divergences, 0);
    assert_eq!(runner.stats.races.groups, 100, "{}", runner.stats);
}

/// KVM, except that the first read of every group member comes back as `0xdead`: a value no
/// order of the members allows.
struct BrokenReads<B>(B);

impl<B: Backend> Backend for BrokenReads<B> {
    fn name(&self) -> &str {
        "broken-kvm"
    }
    fn profile(&self) -> &Profile {
        self.0.profile()
    }
    fn reset(&mut self) -> Result<(), HarnessError> {
        self.0.reset()
    }
    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        let mut out = self.0.apply(op)?;
        if let Outcome::Group(members) = &mut out {
            for m in members {
                if let Some(Outcome::Guest(results)) = m.first_mut() {
                    if let Some(r @ AccessResult::Read(_)) = results.first_mut() {
                        *r = AccessResult::Read(0xdead);
                    }
                }
            }
        }
        Ok(out)
    }
    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        self.0.observe(probes)
    }
}

#[test]
fn a_racing_read_of_a_value_no_order_allows_is_a_divergence() {
    let Some(backend) = common::kvm_or_skip("a_racing_read_of_a_value_no_order_allows_is_a_divergence") else { return };
    let mut runner = Runner::new(BrokenReads(backend));
    let Err(RunError::Divergence(d)) = runner.run(&read_racing_punch()) else { panic!("0xdead must be flagged") };
    assert_eq!(d.op_index, 4);
    assert_eq!(d.subject, Subject::Race { member: 0, repetition: 0, access: Some(0), gpa: Some(GPA) });
    let shown = d.to_string();
    assert!(shown.contains("read 0xdead") && shown.contains("read 0x1122334455667788"), "{shown}");
}

#[test]
fn groups_of_every_member_kind_run_clean_on_kvm() {
    let Some(backend) = common::kvm_or_skip("groups_of_every_member_kind_run_clean_on_kvm") else { return };
    let guest = |gpa, write: Option<u64>| Op::Guest {
        accesses: vec![Access { gpa, width: Width::W4, kind: write.map_or(AccessKind::Read, AccessKind::Write) }],
    };
    let g1 = GmemId(1);
    let program = Program::new(vec![
        Op::CreateGmem { size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
        Op::Map { gmem: G0 },
        Op::Bind { slot: layout::FIRST_PROGRAM_SLOT, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: 4 * P, offset: 0 },
        Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
        Op::Map { gmem: g1 },
        Op::Bind { slot: layout::FIRST_PROGRAM_SLOT + 1, flags: 0, fd: FdArg::Invalid, gpa: GPA + 8 * P, size: P, offset: 0 },
        // Four vCPUs; a host writer and a two-page punch of the same file.
        Op::Group(Group {
            members: vec![
                Member { op: guest(GPA, Some(7)), repeat: 8 },
                Member { op: guest(GPA + 4, None), repeat: 8 },
                Member { op: Op::HostWrite { gmem: G0, offset: 8, width: Width::W8, value: 9 }, repeat: 4 },
                Member { op: Op::Punch { gmem: G0, offset: 0, len: 2 * P }, repeat: 2 },
            ],
        }),
        Op::Group(Group {
            members: vec![
                Member { op: guest(GPA, None), repeat: 4 },
                Member { op: guest(GPA + P, Some(1)), repeat: 4 },
                Member { op: guest(GPA + 8 * P, Some(2)), repeat: 4 },
                Member { op: Op::Unbind { slot: layout::FIRST_PROGRAM_SLOT + 1 }, repeat: 1 },
            ],
        }),
        Op::Group(Group {
            members: vec![
                Member { op: Op::Unmap { gmem: g1 }, repeat: 1 },
                Member { op: Op::CloseGmem { gmem: G0 }, repeat: 1 },
                Member { op: guest(GPA, Some(3)), repeat: 6 },
            ],
        }),
        Op::Group(Group {
            members: vec![
                Member { op: Op::Unbind { slot: layout::FIRST_PROGRAM_SLOT }, repeat: 1 },
                Member { op: guest(GPA, None), repeat: 8 },
            ],
        }),
        Op::Check,
    ]);
    let mut runner = Runner::new(backend);
    for run in 0..30 {
        runner.run(&program).unwrap_or_else(|e| panic!("run {run}: {e}"));
    }
    assert_eq!(runner.stats.races.groups, 120, "{}", runner.stats);
    assert!(runner.stats.races.multi_vcpu >= 60, "{}", runner.stats);
}

/// `replay` of a program with a group runs it until it diverges, or all `--repeat` tries
/// with `--keep-going`, and says how often it reproduced: here a kernel that skips punches
/// (GMEMFUZZ_SKIP_OP=punch) diverges every time; the honest one never does.
#[test]
fn replay_repeats_a_group_and_counts_reproductions() {
    let Some(_) = common::kvm_or_skip("replay_repeats_a_group_and_counts_reproductions") else { return };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("races");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("read-racing-punch.txt");
    std::fs::write(&path, gmemfuzz::repro::print(&read_racing_punch())).unwrap();
    let replay = |skip: Option<&str>, extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gmemfuzz"));
        cmd.arg("replay").arg(&path).args(extra).env_remove("GMEMFUZZ_SKIP_OP");
        if let Some(op) = skip {
            cmd.env("GMEMFUZZ_SKIP_OP", op);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, out) = replay(Some("punch"), &["--repeat", "5", "--keep-going"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reproduced a divergence 5 of 5 tries"), "{out}");
    let (code, out) = replay(Some("punch"), &["--repeat", "5"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reproduced a divergence 1 of 1 tries (stopped at the first)"), "{out}");
    let (code, out) = replay(None, &["--repeat", "10"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("reproduced a divergence 0 of 10 tries"), "{out}");
}

//! Minimization: the smallest program that still shows the same divergence (or kernel
//! splat: `minimize_by` takes any finding).
//!
//! "The same" is the same `DivergenceKind` at an op of the same kind. Ops are deleted first
//! (chunks, halving down to single ops), then arguments are simplified, each candidate
//! run from a reset backend; a candidate with a concurrent group gets `RACE_TRIES` runs to
//! show it.
//!
//! Deleting ops must keep the others naming the same files: `GmemId(n)` is the n-th
//! `create_gmem` op, so [`remove_ops`] renumbers from the program alone; an op whose file's
//! create is gone is dropped too.

use gmemfuzz_backends::op::{layout, AccessKind, ArgValue, GmemId, Op, Shrink, PAGE_SIZE};
use gmemfuzz_backends::Backend;
use gmemfuzz_backends::Group;

use crate::oracle::{Divergence, DivergenceKind};
use crate::program::Program;
use crate::runner::{RunError, Runner};

/// `program` without the ops whose `remove` entry is true, the files renumbered so every
/// kept op (and group member) names the file it named before; ops and members naming a file
/// whose create is gone (or that no create makes: they were skipped anyway) are dropped too,
/// and a group left with one member. `GmemId(n)` names the n-th
/// `create_gmem` op, so this needs the program alone (syzkaller's `RemoveCall`).
pub fn remove_ops(program: &Program, remove: &[bool]) -> Program {
    let removed = |i: usize| remove.get(i).copied().unwrap_or(false);
    // Old id -> new id, for every create of the program.
    let mut new_ids: Vec<Option<GmemId>> = Vec::new();
    let mut kept = 0;
    for (i, op) in program.ops.iter().enumerate() {
        if matches!(op, Op::CreateGmem { .. }) {
            new_ids.push((!removed(i)).then_some(GmemId(kept)));
            kept += u8::from(!removed(i));
        }
    }
    let mut ops = Vec::new();
    for (i, op) in program.ops.iter().enumerate() {
        if removed(i) {
            continue;
        }
        let renumbered = |mut op: Op| {
            if let Some(gmem) = op.gmem_mut() {
                *gmem = new_ids.get(gmem.0 as usize).copied().flatten()?;
            }
            Some(op)
        };
        let op = match op.clone() {
            // A group's members name files too; one left with fewer than two members is no race.
            Op::Group(mut group) => {
                group.members.retain_mut(|m| match renumbered(m.op.clone()) {
                    Some(op) => {
                        m.op = op;
                        true
                    }
                    None => false,
                });
                if group.members.len() < 2 {
                    continue;
                }
                Op::Group(group)
            }
            op => match renumbered(op) {
                Some(op) => op,
                None => continue,
            },
        };
        ops.push(op);
    }
    Program { ops }
}

/// The program up to its op `index`, with every concurrent group up to it (that op
/// included) replaced by its members in order, each once; `None` where there is no group.
/// What a program shows with its groups run in sequence is no race.
pub fn ungrouped(program: &Program, index: usize) -> Option<Program> {
    let upto = program.ops.get(..=index)?;
    if !upto.iter().any(|op| matches!(op, Op::Group(_))) {
        return None;
    }
    let ops = upto
        .iter()
        .flat_map(|op| match op {
            Op::Group(group) => group.members.iter().map(|m| m.op.clone()).collect(),
            op => vec![op.clone()],
        })
        .collect();
    Some(Program { ops })
}

/// Where `program`'s divergence `first`, at or after a group, shows with the groups run in
/// sequence too: that program and its divergence, so the finding is filed where the
/// sequence departs (one fault, one finding, whether or not a group carried the faulty op).
/// A divergence only the concurrency shows gives `None`.
pub fn sequential<B: Backend>(runner: &mut Runner<B>, program: &Program, first: &Divergence) -> Option<(Program, Box<Divergence>)> {
    let sequence = ungrouped(program, first.op_index)?;
    match runner.run(&sequence) {
        Err(RunError::Divergence(d)) => Some((sequence, d)),
        _ => None,
    }
}

/// Removes the single op `k` (see `remove_ops`).
pub fn remove_op(program: &Program, k: usize) -> Program {
    let mut remove = vec![false; program.ops.len()];
    remove[k] = true;
    remove_ops(program, &remove)
}

/// What minimization looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub kind: DivergenceKind,
    pub op: gmemfuzz_backends::OpKind,
}

impl Signature {
    pub fn of(d: &Divergence) -> Signature {
        Signature { kind: d.kind, op: d.op.kind() }
    }
}

pub struct Minimized {
    pub program: Program,
    pub divergence: Box<Divergence>,
    pub runs: usize,
}

/// Runs of a candidate with a concurrent group before it counts as not reproducing: a race
/// shows only in some runs (`replay` reports how often), and a candidate kept must still
/// reproduce within this budget.
pub const RACE_TRIES: usize = 10;

/// How many runs a candidate gets: `RACE_TRIES` if it has a group, else one.
pub fn tries_for(program: &Program) -> usize {
    if program.ops.iter().any(|op| matches!(op, Op::Group(_))) {
        RACE_TRIES
    } else {
        1
    }
}

/// Runs `program` until `done` accepts a run's result, at most `tries_for` times; gives that
/// result, or the last.
pub fn run_tries<B: Backend>(
    runner: &mut Runner<B>,
    program: &Program,
    done: impl Fn(&Result<crate::Trace, RunError>) -> bool,
) -> Result<crate::Trace, RunError> {
    let mut last = runner.run(program);
    for _ in 1..tries_for(program) {
        if done(&last) {
            break;
        }
        last = runner.run(program);
    }
    last
}

/// Whether a run diverged as `want` says.
pub fn diverged_as(result: &Result<crate::Trace, RunError>, want: Signature) -> bool {
    matches!(result, Err(RunError::Divergence(d)) if Signature::of(d) == want)
}

/// Shrinks `program`, which must diverge on `runner`. Errors if it does not. A candidate with
/// a group is kept if it diverges the same way within `tries_for` runs.
pub fn minimize<B: Backend>(runner: &mut Runner<B>, program: &Program) -> Result<Minimized, String> {
    let first = match run_tries(runner, program, Result::is_err) {
        Err(RunError::Divergence(d)) => d,
        Err(RunError::Harness(e)) => return Err(format!("gmemfuzz HARNESS ERROR (not a kernel finding): {e}")),
        Ok(_) => return Err("the program does not diverge: nothing to minimize".into()),
    };
    let want = Signature::of(&first);
    let same = |p: &Program| match run_tries(runner, p, |r| diverged_as(r, want)) {
        Err(RunError::Divergence(d)) if Signature::of(&d) == want => Some(d),
        _ => None,
    };
    Ok(minimize_with(program, first, same))
}

/// Shrinks `program`, whose divergence is `first`, keeping every candidate for which
/// `same` gives a divergence (syzkaller's `Minimize(pred)`): ops are deleted in chunks
/// halving down to single ops, then arguments are simplified.
pub fn minimize_with(program: &Program, first: Box<Divergence>, same: impl FnMut(&Program) -> Option<Box<Divergence>>) -> Minimized {
    // Ops after the diverging one never ran.
    let cut = first.op_index + 1;
    let (program, divergence, runs) = minimize_by(program, Some(cut), first, same);
    Minimized { program, divergence, runs }
}

/// The shrinking itself, for any finding `F` that `same` says a candidate still shows (a
/// divergence, a kernel splat): ops from `cut` on are dropped first, then ops deleted in
/// chunks halving down to single ops, then arguments simplified. Gives the smallest program,
/// its finding and the runs it took.
pub fn minimize_by<F>(program: &Program, cut: Option<usize>, first: F, mut same: impl FnMut(&Program) -> Option<F>) -> (Program, F, usize) {
    let mut runs = 1;
    let mut reproduces = |p: &Program| {
        runs += 1;
        same(p)
    };
    let mut best = Program { ops: program.ops[..cut.unwrap_or(program.ops.len()).min(program.ops.len())].to_vec() };
    let mut best_d = first;

    // Delete chunks, halving the chunk size down to single ops.
    let mut chunk = best.ops.len().div_ceil(2).max(1);
    loop {
        let mut changed = false;
        let mut start = 0;
        while start < best.ops.len() {
            let mut remove = vec![false; best.ops.len()];
            remove[start..(start + chunk).min(best.ops.len())].iter_mut().for_each(|r| *r = true);
            let candidate = remove_ops(&best, &remove);
            if candidate.ops.len() < best.ops.len() {
                if let Some(d) = reproduces(&candidate) {
                    best = candidate;
                    best_d = d;
                    changed = true;
                    continue;
                }
            }
            start += chunk;
        }
        if chunk == 1 && !changed {
            break;
        }
        if !changed {
            chunk = (chunk / 2).max(1);
        }
    }

    // Simplify arguments, op by op, until nothing more helps.
    for _round in 0..4 {
        let mut changed = false;
        for i in 0..best.ops.len() {
            for simpler in simplifications(&best.ops[i]) {
                let mut candidate = best.clone();
                candidate.ops[i] = simpler;
                if let Some(d) = reproduces(&candidate) {
                    best = candidate;
                    best_d = d;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    (best, best_d, runs)
}

/// Simpler versions of an op, most aggressive first: each field made simpler as the op
/// table says (`args::Shrink`), fields in the order of their kind of simplification.
fn simplifications(op: &Op) -> Vec<Op> {
    if let Op::Group(group) = op {
        return group_simplifications(group);
    }
    let kind = op.kind();
    let fields = kind.spec().args;
    let values = op.args();
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by_key(|&i| fields[i].shrink);
    let mut out = Vec::new();
    for i in order {
        for simpler in simpler_values(fields[i].shrink, &values[i]) {
            let mut changed = values.clone();
            changed[i] = simpler;
            out.extend(Op::from_args(kind, changed));
        }
    }
    out
}

/// Simpler values of one field.
fn simpler_values(shrink: Shrink, value: &ArgValue) -> Vec<ArgValue> {
    let smaller = |v: u64| [0, PAGE_SIZE].into_iter().filter(move |&s| s < v);
    match (shrink, value) {
        (Shrink::Len, &ArgValue::U64(v)) => smaller(v).filter(|&s| s > 0).map(ArgValue::U64).collect(),
        (Shrink::Offset, &ArgValue::U64(v)) => smaller(v).map(ArgValue::U64).collect(),
        (Shrink::Gpa, &ArgValue::U64(v)) => (v > layout::WINDOW_GPA).then_some(ArgValue::U64(layout::WINDOW_GPA)).into_iter().collect(),
        (Shrink::Bits, &ArgValue::U64(v)) => bits(v).map(|b| ArgValue::U64(v & !b)).collect(),
        (Shrink::Bits, &ArgValue::U32(v)) => bits(v as u64).map(|b| ArgValue::U32(v & !(b as u32))).collect(),
        (Shrink::Value, &ArgValue::U64(v)) => [0, 1].into_iter().filter(|&s| s < v).map(ArgValue::U64).collect(),
        (Shrink::Accesses, ArgValue::Accesses(accesses)) => {
            let mut out = Vec::new();
            for i in 0..accesses.len() {
                if accesses.len() > 1 {
                    let mut fewer = accesses.clone();
                    fewer.remove(i);
                    out.push(ArgValue::Accesses(fewer));
                }
                if let AccessKind::Write(v) = accesses[i].kind {
                    for small in [0, 1].into_iter().filter(|&s| s < v) {
                        let mut a = accesses.clone();
                        a[i].kind = AccessKind::Write(small);
                        out.push(ArgValue::Accesses(a));
                    }
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Fewer members, fewer repetitions, then simpler members.
fn group_simplifications(group: &Group) -> Vec<Op> {
    let mut out = Vec::new();
    if group.members.len() > 2 {
        for i in 0..group.members.len() {
            let mut g = group.clone();
            g.members.remove(i);
            out.push(Op::Group(g));
        }
    }
    for (i, m) in group.members.iter().enumerate() {
        for repeat in [1, m.repeat / 2].into_iter().filter(|&r| r >= 1 && r < m.repeat) {
            let mut g = group.clone();
            g.members[i].repeat = repeat;
            out.push(Op::Group(g));
        }
        for simpler in simplifications(&m.op) {
            let mut g = group.clone();
            g.members[i].op = simpler;
            out.push(Op::Group(g));
        }
    }
    out
}

fn bits(v: u64) -> impl Iterator<Item = u64> {
    (0..64).map(|b| 1u64 << b).filter(move |b| v & b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repro::text::parse;

    #[test]
    fn removing_a_create_renumbers_later_files_and_drops_its_users() {
        let p = parse(
            "gmemfuzz-program v1\n\
             create_gmem size=0x1000 flags=MMAP\n\
             create_gmem size=0x2000 flags=MMAP\n\
             map g0\n\
             map g1\n\
             punch g1 offset=0 len=0x1000\n",
        )
        .unwrap();
        let q = remove_op(&p, 0);
        let expected = parse(
            "gmemfuzz-program v1\n\
             create_gmem size=0x2000 flags=MMAP\n\
             map g0\n\
             punch g0 offset=0 len=0x1000\n",
        )
        .unwrap();
        assert_eq!(q, expected);
    }

    #[test]
    fn a_failing_create_still_takes_an_id() {
        // The first create fails (size 0) but is g0 all the same: the second file is g1.
        // Deleting the failing create renumbers g1 to g0; deleting the real creator drops
        // its user.
        let p = parse(
            "gmemfuzz-program v2\n\
             create_gmem size=0 flags=0\n\
             create_gmem size=0x1000 flags=MMAP\n\
             map g1\n",
        )
        .unwrap();
        let q = remove_op(&p, 0);
        assert_eq!(q, parse("gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=MMAP\nmap g0\n").unwrap());
        assert_eq!(remove_op(&p, 1).ops, vec![p.ops[0].clone()]);
    }

    #[test]
    fn any_finding_minimizes_and_a_group_gets_race_tries() {
        let p = parse(
            "gmemfuzz-program v3\n\
             create_gmem size=0x8000 flags=0x0\n\
             guest r1@0x13b788\n\
             bind slot=9 flags=GUEST_MEMFD fd=g0 gpa=0x130000 size=0x1000 offset=0x2000\n\
             group\n  x4 guest r1@0x130000\n  close_gmem g0\n  unbind slot=9\nend\n\
             punch g0 offset=0x0 len=0x1000\n",
        )
        .unwrap();
        assert_eq!(tries_for(&p), RACE_TRIES);
        assert_eq!(tries_for(&remove_op(&p, 3)), 1);
        // A stand-in for "the kernel logged the splat": a group that closes and unbinds.
        let splats = |q: &Program| {
            q.ops.iter().any(|op| {
                matches!(op, Op::Group(g) if g.members.iter().any(|m| matches!(m.op, Op::CloseGmem { .. }))
                    && g.members.iter().any(|m| matches!(m.op, Op::Unbind { .. })))
            })
        };
        let (best, finding, runs) = minimize_by(&p, None, "KASAN", |q| splats(q).then_some("KASAN"));
        assert_eq!(finding, "KASAN");
        assert!(runs > 1);
        // Everything else goes, the guest member too; the close went with its file's create
        // (no group is left without it), so the create stays.
        let text = crate::repro::print(&best);
        assert_eq!(
            text, "gmemfuzz-program v3\ncreate_gmem size=0x1000 flags=0x0\ngroup\n  close_gmem g0\n  unbind slot=9\nend\n",
            "{text}"
        );
        // Removing the create drops the members naming its file: here, the whole group.
        assert!(!splats(&remove_op(&best, 0)));
    }
}

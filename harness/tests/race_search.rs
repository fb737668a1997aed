//! The race search that leaves out orders of commuting steps (`Model::race`) against the one
//! that tries every order (`Model::race_every_order`), side by side: for every group of
//! many generated programs and of every program in the corpus and the findings, on answers
//! the members can give (the in-order one, random orders) and on answers no order gives
//! (one result changed), both must allow the same end states, or refuse with the same
//! mismatch. And every order the members can take is allowed.

use std::collections::BTreeSet;
use std::path::Path;

use gmemfuzz::Program;
use gmemfuzz_backends::model::{MmioExits, Model, RaceError, World};
use gmemfuzz_backends::outcome::{AccessResult, Outcome};
use gmemfuzz_backends::{Backend, Group, Op, Profile};
use rand::{Rng, SeedableRng};

/// What a search says, comparable: the end states' fingerprints, or the mismatch.
fn verdict(result: &Result<Vec<World>, RaceError>) -> Result<BTreeSet<u64>, String> {
    match result {
        Ok(ends) => Ok(ends.iter().map(World::fingerprint).collect()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// An answer no order gives, most likely: one member's result changed.
fn changed(actual: &Outcome, rng: &mut impl Rng) -> Option<Outcome> {
    let Outcome::Group(members) = actual else { return None };
    let mut members = members.clone();
    let m = rng.random_range(0..members.len());
    let r = rng.random_range(0..members[m].len());
    members[m][r] = match &members[m][r] {
        Outcome::Guest(results) if !results.is_empty() => {
            let mut results = results.clone();
            let i = rng.random_range(0..results.len());
            results[i] = match results[i] {
                AccessResult::Read(v) => AccessResult::Read(if rng.random() { 0 } else { v ^ 1 }),
                AccessResult::Wrote => AccessResult::Mmio,
                _ => AccessResult::Read(0),
            };
            Outcome::Guest(results)
        }
        Outcome::Ok => Outcome::Err(gmemfuzz_backends::outcome::Errno::EINVAL),
        _ => Outcome::Ok,
    };
    Some(Outcome::Group(members))
}

#[derive(Default)]
struct Tally {
    groups: usize,
    answers: usize,
    refused: usize,
    cut: usize,
}

/// Compares both searches on the answers to `group` from `model`.
fn compare(model: &Model, group: &Group, rng: &mut impl Rng, context: &str, tally: &mut Tally) {
    let mut answers = vec![(model.group_in_an_order(group, |_| 0), true)];
    for _ in 0..4 {
        answers.push((model.group_in_an_order(group, |n| rng.random_range(0..n)), true));
    }
    for i in 0..2 {
        if let Some(c) = changed(&answers[i + 1].0, rng) {
            answers.push((c, false));
        }
    }
    tally.groups += 1;
    for (actual, some_order) in answers {
        let (reduced, size) = model.race_sized(&MmioExits::default(), group, &actual);
        let every = model.race_every_order(&MmioExits::default(), group, &actual);
        assert_eq!(verdict(&reduced), verdict(&every), "{context}: the reduced search and the full one disagree on {actual} for {group:?}");
        if some_order {
            assert!(
                reduced.is_ok() || matches!(reduced, Err(RaceError::TooLarge)),
                "{context}: an order the members took is refused: {actual}: {:?}",
                reduced.as_ref().err()
            );
        }
        tally.answers += 1;
        tally.refused += reduced.is_err() as usize;
        tally.cut += size.cut as usize;
    }
}

/// Runs `program` on the model, comparing the searches at each group.
fn compare_program(program: &Program, profile: &Profile, rng: &mut impl Rng, context: &str, tally: &mut Tally) {
    let mut model = Model::new(profile.clone());
    for (i, op) in program.ops.iter().enumerate() {
        model.set_op_index(i);
        if let Op::Group(group) = op {
            compare(&model, group, rng, &format!("{context}, op #{i}"), tally);
        }
        model.apply(op).expect("the model never fails");
    }
}

fn profiles() -> [(&'static str, Profile); 3] {
    [
        ("host 6.18", Profile::host_6_18()),
        ("software-protected 7.2", Profile::sw_protected_7_2()),
        ("software-protected 6.12", Profile::sw_protected_6_12()),
    ]
}

#[test]
fn the_reduced_search_allows_what_every_order_allows_on_generated_groups() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(26);
    for (name, profile) in profiles() {
        let mut tally = Tally::default();
        let with_groups = Program::seeded(2026, 16, &profile).filter(|p| p.ops.iter().any(|op| matches!(op, Op::Group(_))));
        for (n, program) in
            with_groups.take(std::env::var("RACE_SEARCH_PROGRAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(600)).enumerate()
        {
            compare_program(&program, &profile, &mut rng, &format!("{name}, program #{n}"), &mut tally);
        }
        println!("{name}: {} groups, {} answers, {} refused, {} searches cut", tally.groups, tally.answers, tally.refused, tally.cut);
        assert!(tally.groups >= 600, "{name}: every program holds a group");
        assert!(tally.refused > 0 && tally.refused < tally.answers, "{name}: both verdicts were compared");
        assert!(tally.cut > 0, "{name}: the reduction took effect somewhere");
    }
}

/// Every text program of `dir` and below.
fn programs_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            programs_under(&path, out);
        } else if path.extension().is_some_and(|x| x == "txt") {
            out.push(path);
        }
    }
}

/// From the model-speed issue: four members on one page, 20 s of CPU in the `model` fuzz
/// target before the search left out commuting orders.
const FOUR_MEMBERS_ON_ONE_PAGE: &str = "gmemfuzz-program v3
create_gmem size=0x200000 flags=MMAP|INIT_SHARED
map g0
create_gmem size=0x200000 flags=MMAP|INIT_SHARED
map g1
create_gmem size=0x200000 flags=MMAP|INIT_SHARED
map g2
bind slot=2 flags=GUEST_MEMFD fd=g2 gpa=0x137000 size=0x2000 offset=0x88000
host_write g2 offset=0x165900 width=8 value=0xa5a5000165900113
group
  x5 guest w2@0x138008=0xa5a5000138008116 r2@0x138010
  x3 punch g2 offset=0x89000 len=0x1000
  x3 punch g2 offset=0x89000 len=0x2000
  guest r4@0x138000 r1@0x138000
end
check
";

#[test]
fn the_reduced_search_allows_what_every_order_allows_on_the_corpus_and_the_findings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["corpus", "docs/findings"] {
        programs_under(&root.join(dir), &mut files);
    }
    files.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(26);
    let mut tally = Tally::default();
    for file in &files {
        let Ok(program) = gmemfuzz::repro::load(file) else { continue };
        if !program.ops.iter().any(|op| matches!(op, Op::Group(_))) {
            continue;
        }
        for (name, profile) in profiles() {
            compare_program(&program, &profile, &mut rng, &format!("{} on {name}", file.display()), &mut tally);
        }
    }
    let program = gmemfuzz::repro::text::parse(FOUR_MEMBERS_ON_ONE_PAGE).expect("a text program");
    for (name, profile) in profiles() {
        compare_program(&program, &profile, &mut rng, &format!("four members on one page, on {name}"), &mut tally);
    }
    println!("{} groups from {} files, {} answers, {} refused", tally.groups, files.len(), tally.answers, tally.refused);
    assert!(tally.groups >= 3, "the corpus holds groups");
}

//! The layers of the code, enforced: the module import graph of `harness/src` (and of
//! `backends/src`) read from the sources, failing on an import circle and on an arrow that runs
//! back up the declared layer order, unless `ALLOWED` names that arrow with its reason.
//!
//! A node is a module two levels deep (`lane`, `repro/text`, `cli/nightly`): a file at the top
//! of `src/`, or a file or folder inside a top-level folder. Arrows between a folder's
//! `mod.rs` and what it holds are not counted (a folder's face re-exports its rooms). An
//! arrow is a path in the code: `use crate::…` (groups expanded), `crate::x::y` in an
//! expression, `super::…` (resolved), and in the binary `gmemfuzz::…`; comments and strings
//! are not read.
//!
//! Circles are looked for between the units the layers name (a pattern such as `lane`, with
//! all its rooms, or `repro/text`), so that one running through a folder's own rooms counts,
//! and between the rooms of one unit. Run with `--nocapture` to see the whole graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The harness's layers, bottom up: a module may import its own layer and those below.
/// A pattern names a node and everything under it (`lane` is `lane` and `lane/...`); the
/// longest pattern that matches places a node.
const HARNESS_LAYERS: &[(&str, &[&str])] = &[
    // Leaves every layer may use: the environment, timers, counters, kernel-log splats.
    ("support", &["config", "timing", "stats", "splat"]),
    // The core, bottom up as its imports run: a divergence as values, the known bugs that
    // match one, generation, a program and its text format, the runner (which calls the
    // oracle and the known-bug filter), and what reads the runner's events.
    ("core: oracle", &["oracle"]),
    ("core: known bugs", &["known"]),
    ("core: generation", &["gen"]),
    ("core: program, its text format, inputs", &["program", "input", "repro/text", "repro/v1", "repro/load"]),
    ("core: runner", &["runner"]),
    (
        "core: shrink, replay, C reproducer, scenarios, results",
        &["repro", "repro/shrink", "repro/replay", "repro/c", "repro/selftest", "scenarios", "report", "gen/tests"],
    ),
    // The lab, bottom up: kernel recipes, KCOV (its file formats, the guest's collection and
    // guidance), the coverage report, the lane.
    ("lab: kernel recipes", &["kernel"]),
    ("lab: KCOV", &["kcov"]),
    ("lab: coverage", &["coverage"]),
    ("lab: lane", &["lane"]),
    // The command line on top: the fuzz targets' glue, the commands (nightly among them),
    // the binary.
    ("cli", &["fuzz", "cli", "repro/cli", "bin"]),
];

/// The backends' layers, bottom up.
const BACKEND_LAYERS: &[(&str, &[&str])] = &[
    ("abi", &["abi"]),
    ("vocabulary", &["op", "group", "outcome", "profile"]),
    ("backend trait", &["backend"]),
    ("model", &["model"]),
    ("engines", &["kvm", "sim"]),
];

/// Arrows that stay though they run back up or close a circle: (from, to, why). None.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// The backends' arrows that stay.
const BACKEND_ALLOWED: &[(&str, &str, &str)] = &[
    // op <-> group: one recursive vocabulary in two files (an op may be a group of ops).
    ("op", "group", "an op may be a group, a group's members are ops: one recursive type"),
    (
        "kvm/host",
        "kvm/profile",
        "inside the KVM engine: host.rs reads profile.rs's kernel_release, profile.rs host.rs's probes (backends' own)",
    ),
];

#[test]
fn the_harness_keeps_its_layers() {
    keeps_its_layers("src", "gmemfuzz", HARNESS_LAYERS, ALLOWED);
}

#[test]
fn the_backends_keep_their_layers() {
    keeps_its_layers("../backends/src", "gmemfuzz_backends", BACKEND_LAYERS, BACKEND_ALLOWED);
}

/// Checks the crate `name` in `dir` (from harness/) against its layers, printing its graph.
fn keeps_its_layers(dir: &str, name: &str, layers: &[(&str, &[&str])], allowed: &[(&str, &str, &str)]) {
    let files = read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let graph = Graph::of(&files, name);
    eprintln!("{name}: {}", graph.show());
    let problems = graph.check(layers, allowed);
    assert!(problems.is_empty(), "the import graph of {name} breaks its layers:\n{}", problems.join("\n"));
}

/// Every `.rs` file under `root`, by its path relative to it (`lane/mod.rs`), with its text.
fn read_tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).expect("a readable source file")));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a source file (`lane/mod.rs` is `lane`, `lib.rs` the root);
/// `bin/NAME.rs` is a crate of its own, named `bin/NAME` here.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// A node: the module path's first two parts.
fn node_of(module: &[String]) -> String {
    module.iter().take(2).cloned().collect::<Vec<_>>().join("/")
}

/// Source text with comments, strings and character literals blanked (lines kept).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && (!prev_ident || (i > 0 && c[i - 1] == 'b' && !(i > 1 && ident(c[i - 2])))) && {
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            while c[j] == '#' {
                j += 1;
            }
            let hashes = j - i - 1;
            out.push(' ');
            for ch in &c[i + 1..=j] {
                blank(&mut out, *ch);
            }
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && !prev_ident {
            // A character literal ('x', '\n', '\u{1F}'), or a lifetime ('a), left as it is.
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'')
            } else {
                (c.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match end {
                Some(end) => {
                    for ch in &c[i..=end] {
                        blank(&mut out, *ch);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c[i]);
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers and punctuation (`::` as one), each with its line.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i].is_alphanumeric() || c[i] == '_' {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push((c[start..i].iter().collect(), n + 1));
            } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
                out.push(("::".to_string(), n + 1));
                i += 2;
            } else if !c[i].is_whitespace() {
                out.push((c[i].to_string(), n + 1));
                i += 1;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Reads a path or use tree at `t[*i]` (after its root and `::`): every full path it names.
fn tree(t: &[(String, usize)], i: &mut usize) -> Vec<Vec<String>> {
    let word = |s: &str| s.chars().all(|ch| ch.is_alphanumeric() || ch == '_');
    let mut prefix = Vec::new();
    loop {
        match t.get(*i).map(|x| x.0.as_str()) {
            Some("{") => {
                *i += 1;
                let mut all = Vec::new();
                while *i < t.len() && t[*i].0 != "}" {
                    let at = *i;
                    for rest in tree(t, i) {
                        all.push(prefix.iter().cloned().chain(rest).collect());
                    }
                    if t.get(*i).is_some_and(|x| x.0 == ",") || *i == at {
                        *i += 1;
                    }
                }
                *i += 1;
                return all;
            }
            Some("*") => {
                *i += 1;
                return vec![prefix];
            }
            Some(w) if word(w) && w != "as" => {
                if w != "self" {
                    prefix.push(w.to_string());
                }
                *i += 1;
                if t.get(*i).is_some_and(|x| x.0 == "::") {
                    *i += 1;
                    continue;
                }
                if t.get(*i).is_some_and(|x| x.0 == "as") {
                    *i += 2;
                }
                return vec![prefix];
            }
            _ => return vec![prefix],
        }
    }
}

/// An arrow's evidence: `file:line (path)`.
type Evidence = Vec<String>;

struct Graph {
    nodes: BTreeSet<String>,
    edges: BTreeMap<(String, String), Evidence>,
}

impl Graph {
    /// The graph of a crate's files (`(path under src/, text)`); `name` is the crate's name,
    /// which a binary in `bin/` imports it by.
    fn of(files: &[(String, String)], name: &str) -> Graph {
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(f, _)| module_of(f)).collect();
        // The crate root's re-exports (`pub use runner::Runner`): `crate::Runner` is the runner's.
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some((_, lib)) = files.iter().find(|(f, _)| f == "lib.rs") {
            let t = tokens(&strip(lib));
            for i in 0..t.len() {
                if t[i].0 == "use" && i > 0 && t[i - 1].0 == "pub" {
                    let mut at = i + 1;
                    for path in tree(&t, &mut at) {
                        if let Some(last) = path.last() {
                            aliases.insert(last.clone(), path.clone());
                        }
                    }
                }
            }
        }
        let resolve = |path: &[String]| -> Option<Vec<String>> {
            let path: Vec<String> = match path.first().and_then(|p| aliases.get(p)) {
                Some(alias) if !modules.contains(&path[..1]) => alias.iter().chain(&path[1..]).cloned().collect(),
                _ => path.to_vec(),
            };
            (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
        };
        let mut graph = Graph { nodes: BTreeSet::new(), edges: BTreeMap::new() };
        for (file, text) in files {
            let module = module_of(file);
            if module.is_empty() {
                continue;
            }
            let from = node_of(&module);
            graph.nodes.insert(from.clone());
            let in_bin = module.first().is_some_and(|m| m == "bin");
            let t = tokens(&strip(text));
            // Inline modules (`mod tests { … }`), for `super::`: (name, brace depth inside).
            let mut inline: Vec<(String, usize)> = Vec::new();
            let mut depth = 0;
            let mut i = 0;
            while i < t.len() {
                let tok = t[i].0.as_str();
                match tok {
                    "{" => depth += 1,
                    "}" => {
                        if inline.last().is_some_and(|m| m.1 == depth) {
                            inline.pop();
                        }
                        depth -= 1;
                    }
                    "mod" if t.get(i + 2).is_some_and(|x| x.0 == "{") => inline.push((t[i + 1].0.clone(), depth + 1)),
                    _ => {}
                }
                let root = (tok == "crate" && !in_bin) || (in_bin && tok == name) || tok == "super";
                let joined = t.get(i + 1).is_some_and(|x| x.0 == "::");
                let after_path = i > 0 && t[i - 1].0 == "::";
                if !root || !joined || after_path {
                    i += 1;
                    continue;
                }
                let line = t[i].1;
                let mut base: Vec<String> = if tok == "super" {
                    let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|m| m.0.clone())).collect();
                    here[..here.len().saturating_sub(1)].to_vec()
                } else {
                    Vec::new()
                };
                i += 2;
                while t.get(i).is_some_and(|x| x.0 == "super") && t.get(i + 1).is_some_and(|x| x.0 == "::") {
                    base.pop();
                    i += 2;
                }
                for path in tree(&t, &mut i) {
                    let full: Vec<String> = base.iter().cloned().chain(path.iter().cloned()).collect();
                    let Some(target) = resolve(&full) else { continue };
                    let to = node_of(&target);
                    if to.is_empty() || to == from || to.starts_with(&format!("{from}/")) || from.starts_with(&format!("{to}/")) {
                        continue;
                    }
                    let shown = if tok == "super" { format!("super → {}", full.join("::")) } else { full.join("::") };
                    graph.edges.entry((from.clone(), to)).or_default().push(format!("{file}:{line} ({shown})"));
                }
            }
        }
        graph
    }

    /// Each arrow with where it is written (the first place, and how many more).
    fn show(&self) -> String {
        let mut out = format!("{} modules, {} arrows:\n", self.nodes.len(), self.edges.len());
        for ((from, to), at) in &self.edges {
            let more = if at.len() > 1 { format!(" and {} more", at.len() - 1) } else { String::new() };
            out.push_str(&format!("  {from} -> {to}: {}{more}\n", at[0]));
        }
        out
    }

    /// What breaks the layers: unplaced modules, back arrows, circles, and allowlist entries
    /// that name no arrow any more.
    fn check(&self, layers: &[(&str, &[&str])], allowed: &[(&str, &str, &str)]) -> Vec<String> {
        let layer_of = |node: &str| -> Option<usize> {
            layers
                .iter()
                .enumerate()
                .flat_map(|(n, (_, patterns))| patterns.iter().map(move |p| (n, *p)))
                .filter(|(_, p)| node == *p || node.starts_with(&format!("{p}/")))
                .max_by_key(|(_, p)| p.len())
                .map(|(n, _)| n)
        };
        let is_allowed = |from: &str, to: &str| allowed.iter().any(|a| a.0 == from && a.1 == to);
        let mut problems = Vec::new();
        for node in &self.nodes {
            if layer_of(node).is_none() {
                problems.push(format!("module {node} is in no layer: place it in tests/layers.rs"));
            }
        }
        for (from, to, why) in allowed {
            if !self.edges.contains_key(&(from.to_string(), to.to_string())) {
                problems.push(format!("allowed arrow {from} -> {to} ({why}) is gone: delete it from the allowlist"));
            }
        }
        for ((from, to), at) in &self.edges {
            let (Some(low), Some(high)) = (layer_of(from), layer_of(to)) else { continue };
            if high > low && !is_allowed(from, to) {
                problems.push(format!(
                    "back arrow: {from} ({}) imports {to} ({}), a layer above it, at {}",
                    layers[low].0,
                    layers[high].0,
                    at.join(", ")
                ));
            }
        }
        // Circles between the units the layers name (`coverage` and `lane`: `coverage -> lane`
        // and `lane/coverage -> coverage` make one, through the lane's own rooms), then between
        // the rooms of one unit (`coverage/html -> coverage/report -> coverage/html`).
        let folder = |n: &str| -> String {
            let patterns = layers.iter().flat_map(|(_, p)| p.iter());
            let unit = patterns.filter(|p| n == **p || n.starts_with(&format!("{p}/"))).max_by_key(|p| p.len());
            unit.map_or_else(|| n.split('/').next().unwrap_or(n).to_string(), |p| p.to_string())
        };
        let kept: Vec<(&String, &String)> = self.edges.keys().filter(|(f, t)| !is_allowed(f, t)).map(|(f, t)| (f, t)).collect();
        let folders: BTreeSet<String> = self.nodes.iter().map(|n| folder(n)).collect();
        let between: BTreeMap<&String, Vec<&String>> = folders
            .iter()
            .map(|d| (d, folders.iter().filter(|e| kept.iter().any(|(f, t)| folder(f) == **d && folder(t) == **e && d != *e)).collect()))
            .collect();
        let inside: BTreeMap<&String, Vec<&String>> = self
            .nodes
            .iter()
            .map(|n| (n, kept.iter().filter(|(f, t)| *f == n && folder(f) == folder(t)).map(|(_, t)| *t).collect()))
            .collect();
        for (circle, of) in circles(&between)
            .into_iter()
            .map(|c| (c, &folder as &dyn Fn(&str) -> String))
            .chain(circles(&inside).into_iter().map(|c| (c, &(|n: &str| n.to_string()) as &dyn Fn(&str) -> String)))
        {
            let mut lines = format!("import circle: {}", circle.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "));
            for (from, to) in &kept {
                let (a, b) = (of(from), of(to));
                if a != b && circle.contains(&&a) && circle.contains(&&b) {
                    lines.push_str(&format!("\n  {from} -> {to}: {}", self.edges[&((*from).clone(), (*to).clone())].join(", ")));
                }
            }
            problems.push(lines);
        }
        problems
    }
}

/// The circles of a graph: its strongly connected components of more than one node (Tarjan).
fn circles<'a>(graph: &BTreeMap<&'a String, Vec<&'a String>>) -> Vec<Vec<&'a String>> {
    struct Walk<'a, 'g> {
        graph: &'g BTreeMap<&'a String, Vec<&'a String>>,
        index: BTreeMap<&'a String, usize>,
        low: BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        found: Vec<Vec<&'a String>>,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, v: &'a String) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for &w in self.graph.get(v).map(|x| x.as_slice()).unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for &v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The checker itself, on small crates written here.
mod checker {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> Graph {
        let files: Vec<(String, String)> = files.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        Graph::of(&files, "demo")
    }

    const LAYERS: &[(&str, &[&str])] = &[("low", &["base", "text"]), ("high", &["lab"]), ("top", &["cli", "bin"])];

    fn arrows(g: &Graph) -> Vec<String> {
        g.edges.keys().map(|(f, t)| format!("{f}->{t}")).collect()
    }

    #[test]
    fn paths_groups_super_and_aliases_make_arrows() {
        let g = crate_of(&[
            ("lib.rs", "pub mod base; pub mod lab; pub mod cli; pub use base::Thing;"),
            ("base.rs", "pub struct Thing;"),
            ("lab/mod.rs", "mod kernel; use crate::{base::Thing, cli};"),
            ("lab/kernel.rs", "use super::super::text; fn f() { let _ = crate::Thing; }"),
            ("text.rs", "// use crate::cli::X;\nconst S: &str = \"crate::cli::Y\"; fn c() -> char { '\"' }"),
            ("cli/mod.rs", "mod tests { use super::*; use super::super::lab; }"),
            ("bin/demo.rs", "use demo::cli; fn main() { demo::lab::kernel::f(); }"),
        ]);
        assert_eq!(
            arrows(&g),
            ["bin/demo->cli", "bin/demo->lab/kernel", "cli->lab", "lab->base", "lab->cli", "lab/kernel->base", "lab/kernel->text"]
        );
        assert_eq!(g.edges[&("lab".to_string(), "cli".to_string())], ["lab/mod.rs:1 (cli)"]);
    }

    #[test]
    fn a_back_arrow_is_found_and_shown() {
        let clean = [("base.rs", "pub struct Thing;"), ("lab/mod.rs", "use crate::base::Thing;"), ("cli.rs", "use crate::lab;")];
        assert_eq!(crate_of(&clean).check(LAYERS, &[]), Vec::<String>::new());
        let mut back = clean.to_vec();
        back.push(("base.rs", "pub struct Thing;\nfn f() { crate::lab::go() }"));
        back.remove(0);
        let problems = crate_of(&back).check(LAYERS, &[]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0], "back arrow: base (low) imports lab (high), a layer above it, at base.rs:2 (lab::go)");
        assert!(problems[1].starts_with("import circle: base, lab\n  base -> lab: base.rs:2"), "{}", problems[1]);
        assert_eq!(crate_of(&back).check(LAYERS, &[("base", "lab", "why")]), Vec::<String>::new());
    }

    #[test]
    fn a_circle_in_one_layer_is_found() {
        let g = crate_of(&[("base.rs", "use crate::text::T;"), ("text.rs", "use crate::base::B;")]);
        let problems = g.check(LAYERS, &[]);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("import circle: base, text"), "{}", problems[0]);
        assert!(g.check(LAYERS, &[("text", "base", "why")]).is_empty());
    }

    #[test]
    fn a_circle_through_a_folders_rooms_is_found() {
        // coverage -> lane (its face), lane/coverage -> coverage: a circle between the folders.
        let g = crate_of(&[("lab/mod.rs", "mod coverage;"), ("lab/coverage.rs", "use crate::base::B;"), ("base.rs", "use crate::lab::X;")]);
        let problems = g.check(LAYERS, &[]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[1].starts_with("import circle: base, lab\n  base -> lab: base.rs:1 (lab::X)\n  lab/coverage -> base:"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn stale_allowances_and_unplaced_modules_are_named() {
        let g = crate_of(&[("base.rs", ""), ("extra.rs", "")]);
        assert_eq!(
            g.check(LAYERS, &[("base", "lab", "why")]),
            [
                "module extra is in no layer: place it in tests/layers.rs",
                "allowed arrow base -> lab (why) is gone: delete it from the allowlist"
            ]
        );
    }
}

//! Objects compiled again with DWARF (`-g`), for line numbers, from a kernel built without
//! debug info. The copy is used only when its code is the code that was linked: every
//! executable section byte-identical, with the same relocations.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind};

use super::kbuild::{debug_compile_args, Build, KbuildObject};

/// The cache of debug objects of a build: `<lane cache>/debug-objs/<key>/` (where the lane's
/// cache is), or `fallback/debug-objs/<key>/`.
pub fn cache_dir(build: &Build, fallback: &Path) -> PathBuf {
    let lane_cache = build.dir.parent().and_then(Path::parent).filter(|c| c.join("out").is_dir() && c.join("build").is_dir());
    lane_cache.unwrap_or(fallback).join("debug-objs").join(&build.key)
}

/// The object compiled with `-g` (from the cache when its code still matches), or why not.
pub fn debug_object(build: &Build, obj: &KbuildObject, cache: &Path) -> Result<PathBuf> {
    let built = std::fs::read(&obj.object).with_context(|| format!("reading {}", obj.object.display()))?;
    let out = cache.join(obj.source.with_extension("g.o"));
    if let Ok(cached) = std::fs::read(&out) {
        if same_code(&built, &cached).is_ok() {
            return Ok(out);
        }
    }
    std::fs::create_dir_all(out.parent().unwrap_or(cache)).with_context(|| format!("creating {}", cache.display()))?;
    // Unique among processes and among threads of this one.
    static TMP: AtomicUsize = AtomicUsize::new(0);
    let tmp = out.with_extension(format!("tmp{}-{}.o", std::process::id(), TMP.fetch_add(1, Ordering::Relaxed)));
    let args = debug_compile_args(&obj.command, &tmp)?;
    // A batch job beside the lane's QEMUs: the lowest priority.
    let status = Command::new("nice")
        .args(["-n", "19"])
        .args(&args)
        .current_dir(&build.dir)
        .status()
        .with_context(|| format!("running {}", args[0]))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("compiling {} with -g failed ({status})", obj.source.display());
    }
    let debug = std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    if let Err(why) = same_code(&built, &debug) {
        let _ = std::fs::remove_file(&tmp);
        bail!("{} compiled with -g differs from the linked object: {why}", obj.source.display());
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(out)
}

/// Whether two objects have the same executable sections: names, bytes and relocations.
pub fn same_code(a: &[u8], b: &[u8]) -> std::result::Result<(), String> {
    let (a, b) = match (object::File::parse(a), object::File::parse(b)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err("not ELF objects".into()),
    };
    let names = |f: &object::File| -> Vec<String> {
        f.sections().filter(|s| s.kind() == SectionKind::Text).filter_map(|s| s.name().ok().map(str::to_string)).collect()
    };
    if names(&a) != names(&b) {
        return Err(format!("executable sections {:?} vs {:?}", names(&a), names(&b)));
    }
    for name in names(&a) {
        let (sa, sb) = (a.section_by_name(&name).unwrap(), b.section_by_name(&name).unwrap());
        if sa.data().ok() != sb.data().ok() {
            return Err(format!("{name}: bytes differ"));
        }
        if relocations(&a, &sa) != relocations(&b, &sb) {
            return Err(format!("{name}: relocations differ"));
        }
    }
    Ok(())
}

/// A section's relocations: offset, kind, target (symbol name, or the section a section
/// symbol stands for) and addend.
fn relocations(file: &object::File, section: &object::Section) -> Vec<(u64, String, String, i64)> {
    section
        .relocations()
        .map(|(off, r)| {
            let target = match r.target() {
                RelocationTarget::Symbol(i) => match file.symbol_by_index(i) {
                    Ok(s) if s.kind() == object::SymbolKind::Section => s
                        .section_index()
                        .and_then(|si| file.section_by_index(si).ok())
                        .and_then(|s| s.name().ok().map(str::to_string))
                        .unwrap_or_default(),
                    Ok(s) => s.name().unwrap_or("").to_string(),
                    Err(_) => String::new(),
                },
                other => format!("{other:?}"),
            };
            (off, format!("{:?}", r.flags()), target, r.addend())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles a small C file with these flags; none where there is no gcc.
    fn compile(dir: &Path, name: &str, flags: &[&str]) -> Option<Vec<u8>> {
        let src = dir.join("f.c");
        std::fs::write(&src, "static int g(int x) { return x * 3; }\nint f(int x) { if (x > 2) return g(x) + 1; return x; }\n").unwrap();
        let out = dir.join(name);
        let status = Command::new("gcc").args(flags).arg("-c").arg("-o").arg(&out).arg(&src).status().ok()?;
        status.success().then(|| std::fs::read(&out).unwrap())
    }

    #[test]
    fn debug_info_leaves_the_code_alone_and_other_code_is_told() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-samecode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let Some(plain) = compile(&dir, "plain.o", &["-O2"]) else {
            eprintln!("SKIPPED debug_info_leaves_the_code_alone_and_other_code_is_told: no gcc");
            return;
        };
        let debug = compile(&dir, "debug.o", &["-O2", "-g"]).unwrap();
        assert_ne!(plain, debug, "-g adds DWARF sections");
        assert_eq!(same_code(&plain, &debug), Ok(()));
        let other = compile(&dir, "O0.o", &["-O0"]).unwrap();
        assert!(same_code(&plain, &other).unwrap_err().contains(".text"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

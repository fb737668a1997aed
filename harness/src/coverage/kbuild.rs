//! The kbuild output directory a lane kernel was built in: its objects, the gcc command line
//! each was compiled with (`.<name>.o.cmd`, `savedcmd_...`), and the source tree it read.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kernel::LaneKernel;

/// A kernel's build: where its objects and sources are.
#[derive(Clone, Debug)]
pub struct Build {
    /// The kbuild output directory (`O=`): objects, `.cmd` files, `vmlinux`.
    pub dir: PathBuf,
    /// The source tree (kbuild's `source` link in an `O=` build).
    pub source: PathBuf,
    /// The vmlinux of the kernel asked about.
    pub vmlinux: PathBuf,
    /// A name for the build in caches: the lane's cache key (`af02c4a7911e8fd1`, `tree-…`).
    pub key: String,
    /// The kernel's .config.
    pub config: String,
}

/// One compiled object of the build.
#[derive(Clone, Debug)]
pub struct KbuildObject {
    /// The object file (absolute).
    pub object: PathBuf,
    /// Its source file relative to the source tree (`virt/kvm/guest_memfd.c`).
    pub source: PathBuf,
    /// The command that compiled it (`savedcmd_...`), run from the build directory.
    pub command: String,
}

impl Build {
    /// Finds the build directory of a lane kernel: the lane cache's `out/<key>/bzImage` names
    /// its build in `out/<key>/stamp` (`build/<key>`, or a `build/tree-*` for a user's tree);
    /// a bzImage inside a build directory (`arch/x86/boot/bzImage`) is its own. The build's
    /// vmlinux must carry the same GNU build ID as the kernel's: a tree rebuilt since has other
    /// objects.
    pub fn of(kernel: &LaneKernel) -> Result<Build> {
        let image = &kernel.image;
        let beside = image.parent().unwrap_or(Path::new("."));
        let no_build = || {
            anyhow::anyhow!(
                "{}: no kbuild output directory for this kernel (coverage maps PCs through the build's objects; \
                 use a lane build: --kernel-version or --kernel-src)",
                image.display()
            )
        };
        if let Ok(stamp) = std::fs::read_to_string(beside.join("stamp")) {
            let vmlinux = beside.join("vmlinux");
            let id = build_id(&vmlinux)?;
            let cache_build = beside.parent().and_then(Path::parent).map(|c| c.join("build")).ok_or_else(no_build)?;
            let key = stamp.split_whitespace().find_map(|w| w.strip_prefix("key=")).unwrap_or("");
            let mut candidates = vec![cache_build.join(key)];
            if stamp.contains(" tree=") {
                let mut trees: Vec<PathBuf> =
                    std::fs::read_dir(&cache_build).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
                trees.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tree-")) && p.is_dir());
                trees.sort();
                candidates.extend(trees);
            }
            let mut stale = Vec::new();
            for dir in candidates.into_iter().filter(|d| d.join("vmlinux").is_file()) {
                if build_id(&dir.join("vmlinux"))? == id {
                    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    return Build::at(&dir, vmlinux, name);
                }
                stale.push(dir.display().to_string());
            }
            if !stale.is_empty() {
                bail!(
                    "{}: its build directory was rebuilt since (another vmlinux is in {}); rebuild the kernel to map its PCs",
                    image.display(),
                    stale.join(", ")
                );
            }
            return Err(no_build());
        }
        // …/arch/x86/boot/bzImage in a build directory.
        if let Some(dir) = image.ancestors().nth(4).filter(|d| d.join("vmlinux").is_file() && d.join(".config").is_file()) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "build".into());
            return Build::at(dir, dir.join("vmlinux"), name);
        }
        Err(no_build())
    }

    fn at(dir: &Path, vmlinux: PathBuf, key: String) -> Result<Build> {
        let config = std::fs::read_to_string(dir.join(".config")).with_context(|| format!("reading {}/.config", dir.display()))?;
        // An O= build links `source` to the tree; an in-tree build is its own source.
        let source = std::fs::canonicalize(dir.join("source")).unwrap_or_else(|_| dir.to_path_buf());
        Ok(Build { dir: dir.to_path_buf(), source, vmlinux, key, config })
    }

    /// Whether the kernel collects KCOV coverage at all.
    pub fn has_kcov(&self) -> bool {
        self.config.lines().any(|l| l == "CONFIG_KCOV=y")
    }

    /// Every object compiled from a source under these directories of the tree (relative,
    /// `virt/kvm`), sorted by object path. Composite objects and archives have no source
    /// and are left out.
    pub fn objects_under(&self, dirs: &[&str]) -> Result<Vec<KbuildObject>> {
        let mut found = Vec::new();
        for dir in dirs {
            let mut stack = vec![self.dir.join(dir)];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(path);
                        continue;
                    }
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(obj_name) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".o.cmd")) else { continue };
                    let object = d.join(format!("{obj_name}.o"));
                    if !object.is_file() {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    if let Some(obj) = self.parse_cmd(&text, object) {
                        found.push(obj);
                    }
                }
            }
        }
        found.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(found)
    }

    /// The object a `.cmd` file describes, if it was compiled from one source of the tree.
    fn parse_cmd(&self, text: &str, object: PathBuf) -> Option<KbuildObject> {
        let value = |prefix: &str| {
            text.lines().find_map(|l| l.strip_prefix(prefix).and_then(|rest| rest.split_once(" := ")).map(|(_, v)| v.trim().to_string()))
        };
        let command = value("savedcmd_")?;
        let source_path = value("source_")?;
        let abs = normalize(&self.dir.join(source_path));
        let source = abs.strip_prefix(&self.source).ok()?.to_path_buf();
        Some(KbuildObject { object, source, command })
    }
}

/// A path with `.` and `..` resolved lexically (kbuild names sources `arch/x86/kvm/../../../virt/...`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The GNU build ID of an ELF file (read without loading the whole file).
fn build_id(path: &Path) -> Result<Vec<u8>> {
    use object::{Object, ReadCache};
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).with_context(|| format!("{} is not an ELF file", path.display()))?;
    let id = elf.build_id().with_context(|| format!("reading the build ID of {}", path.display()))?;
    id.map(<[u8]>::to_vec).with_context(|| format!("{} has no GNU build ID", path.display()))
}

/// The command line to compile an object again with DWARF (`-g`) into `out`: kbuild's own
/// command with its dependency-file option dropped (it would write into the build directory)
/// and the output redirected. gcc promises `-g` does not change the code; the caller checks.
pub fn debug_compile_args(command: &str, out: &Path) -> Result<Vec<String>> {
    let mut words = shell_words::split(command).context("splitting the kbuild command line")?;
    // Keep the compile only (a `;` or `&&` chain would run other tools on the object).
    if let Some(end) = words.iter().position(|w| matches!(w.as_str(), ";" | "&&" | "||" | "|")) {
        words.truncate(end);
    }
    if words.first().is_none_or(|w| !w.ends_with("gcc") && !w.contains("gcc-")) {
        bail!("not a gcc command: {}", words.first().map_or("", String::as_str));
    }
    words.retain(|w| !w.starts_with("-Wp,-MMD,") && !w.starts_with("-Wp,-MD,"));
    let o = words.iter().position(|w| w == "-o").context("no -o in the kbuild command")?;
    let c = words.iter().position(|w| w == "-c").context("no -c in the kbuild command")?;
    words[o + 1] = out.to_string_lossy().into_owned();
    words.insert(c, "-g".to_string());
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_compile_drops_the_dep_file_and_redirects_the_output() {
        let cmd = "gcc -Wp,-MMD,virt/kvm/.guest_memfd.o.d -nostdinc -DKBUILD_MODFILE='\"arch/x86/kvm/kvm\"' -O2 -c -o virt/kvm/guest_memfd.o /src/virt/kvm/guest_memfd.c";
        let args = debug_compile_args(cmd, Path::new("/tmp/x.o")).unwrap();
        assert_eq!(
            args,
            [
                "gcc",
                "-nostdinc",
                "-DKBUILD_MODFILE=\"arch/x86/kvm/kvm\"",
                "-O2",
                "-g",
                "-c",
                "-o",
                "/tmp/x.o",
                "/src/virt/kvm/guest_memfd.c"
            ]
        );
        assert!(debug_compile_args("ld -r -o a.o b.o", Path::new("/tmp/x.o")).is_err());
    }

    #[test]
    fn kbuild_paths_normalize() {
        assert_eq!(normalize(Path::new("/s/arch/x86/kvm/../../../virt/kvm/guest_memfd.c")), Path::new("/s/virt/kvm/guest_memfd.c"));
    }
}

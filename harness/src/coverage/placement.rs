//! Where an object's functions and KCOV points landed in vmlinux.
//!
//! The linker copies each input section of an object whole, so every function of one section
//! of the object sits at the same distance from its vmlinux address: the section's base. The
//! base is the one most function symbols agree on (same name and size in vmlinux), and then
//! each function is confirmed at base + its offset. That settles static functions whose name
//! is in several files; a section none of whose functions is unique (one small static function
//! shared by name and size with another file) is ambiguous, and said so.
//!
//! Coverage points are the calls to `__sanitizer_cov_trace_pc` (gcc's
//! `-fsanitize-coverage=trace-pc`): one relocation each in the object. KCOV records the call's
//! return address (`_RET_IP_` in kernel/kcov.c, KASLR-canonicalized), i.e. the end of the
//! 5-byte `call rel32`: base + relocation offset + 4. Each is checked in vmlinux: an `e8`
//! call whose target is `__sanitizer_cov_trace_pc`. Where gcc made the call a tail call
//! (`jmp`, a block that ends the function), KCOV records the return address into the
//! function's caller instead, which names no point: such points are counted apart, as
//! unobservable. So are the points of a `__weak` default another file overrides: its code
//! stays in vmlinux but nothing calls it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind};

/// The KCOV callback of gcc's `-fsanitize-coverage=trace-pc`.
pub const TRACE_PC: &str = "__sanitizer_cov_trace_pc";

/// vmlinux's symbol table and the bytes of its loaded sections.
pub struct Vmlinux {
    data: Vec<u8>,
    /// (address, size, file offset) of each section with file contents.
    sections: Vec<(u64, u64, u64)>,
    /// (name, address, size) of every symbol.
    symbols: Vec<(String, u64, u64)>,
    by_name: HashMap<String, Vec<u32>>,
    by_address: HashMap<u64, Vec<u32>>,
    /// The address of `__sanitizer_cov_trace_pc` (none without KCOV).
    pub trace_pc: Option<u64>,
}

impl Vmlinux {
    pub fn read(path: &Path) -> Result<Vmlinux> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let elf = object::File::parse(&*data).with_context(|| format!("{} is not an ELF file", path.display()))?;
        let mut sections = Vec::new();
        for s in elf.sections() {
            if let Some((off, size)) = s.file_range() {
                sections.push((s.address(), size, off));
            }
        }
        let mut symbols = Vec::new();
        for s in elf.symbols() {
            let Ok(name) = s.name() else { continue };
            if name.is_empty() || s.kind() == SymbolKind::Section || s.kind() == SymbolKind::File {
                continue;
            }
            symbols.push((name.to_string(), s.address(), s.size()));
        }
        drop(elf);
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_address: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, (name, addr, _)) in symbols.iter().enumerate() {
            by_name.entry(name.clone()).or_default().push(i as u32);
            by_address.entry(*addr).or_default().push(i as u32);
        }
        let trace_pc = by_name.get(TRACE_PC).and_then(|v| v.first()).map(|&i| symbols[i as usize].1);
        Ok(Vmlinux { data, sections, symbols, by_name, by_address, trace_pc })
    }

    /// The bytes at an address, if a section holds all of them.
    pub fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let &(base, _, off) = self.sections.iter().find(|(a, s, _)| addr >= *a && addr + len <= a + s)?;
        let start = (off + addr - base) as usize;
        self.data.get(start..start + len as usize)
    }

    fn has_symbol_at(&self, addr: u64, name: &str, size: u64) -> bool {
        self.by_address.get(&addr).is_some_and(|v| {
            v.iter().any(|&i| {
                let (n, _, s) = &self.symbols[i as usize];
                n == name && *s == size
            })
        })
    }

    /// Whether a PC follows a direct call (`e8 rel32`): a KCOV PC of this kernel is one, of
    /// `__sanitizer_cov_trace_pc` or, after a tail-called point, of the function's caller.
    pub fn follows_a_call(&self, pc: u64) -> bool {
        pc.checked_sub(5).and_then(|a| self.bytes(a, 1)) == Some(&[0xe8])
    }

    /// Whether a KCOV PC is the return address of a call to `__sanitizer_cov_trace_pc`.
    pub fn is_trace_pc_return(&self, pc: u64) -> bool {
        let (Some(target), Some(call)) = (self.trace_pc, pc.checked_sub(5).and_then(|a| self.bytes(a, 5))) else { return false };
        let rel = i32::from_le_bytes([call[1], call[2], call[3], call[4]]);
        call[0] == 0xe8 && pc.wrapping_add(rel as i64 as u64) == target
    }
}

/// A function symbol of an object, and where it is in vmlinux.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjFunction {
    pub name: String,
    pub section: String,
    /// Offset in its section of the object.
    pub offset: u64,
    pub size: u64,
    /// A weak definition (`__weak`): another file's may override it.
    pub weak: bool,
    /// Its vmlinux address; none when its section was not placed (discarded `.exit.text`,
    /// ambiguous) or the symbol is not at base + offset.
    pub addr: Option<u64>,
}

/// One coverage point of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub section: String,
    /// Offset of the call's rel32 field in its section of the object.
    pub offset: u64,
    /// The PC KCOV reports when it runs.
    pub pc: u64,
    /// Index of the function it is in (`Placed::functions`).
    pub function: Option<usize>,
}

/// An object's functions and coverage points in vmlinux.
#[derive(Debug, Default)]
pub struct Placed {
    pub functions: Vec<ObjFunction>,
    pub points: Vec<Point>,
    /// Executable sections placed: name -> vmlinux base.
    pub bases: HashMap<String, u64>,
    /// Points KCOV cannot report: tail calls of `__sanitizer_cov_trace_pc`.
    pub tail_calls: usize,
    /// Points in overridden weak functions (dead code).
    pub dead: usize,
    /// What could not be placed, one line each.
    pub notes: Vec<String>,
}

/// Places an object (its bytes) in vmlinux.
pub fn place(object_bytes: &[u8], vm: &Vmlinux) -> Result<Placed> {
    let obj = object::File::parse(object_bytes).context("not an ELF object")?;
    let mut placed = Placed::default();
    let mut overridden = Vec::new();
    for section in obj.sections().filter(|s| s.kind() == SectionKind::Text) {
        let sname = section.name().unwrap_or("?").to_string();
        let mut funcs: Vec<ObjFunction> = obj
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0 && s.section_index() == Some(section.index()))
            .filter_map(|s| {
                Some(ObjFunction {
                    name: s.name().ok()?.to_string(),
                    section: sname.clone(),
                    offset: s.address(),
                    size: s.size(),
                    weak: s.is_weak(),
                    addr: None,
                })
            })
            .collect();
        funcs.sort_by_key(|f| f.offset);
        // Votes for the section's base.
        let mut votes: HashMap<u64, usize> = HashMap::new();
        for f in &funcs {
            for &i in vm.by_name.get(&f.name).map(Vec::as_slice).unwrap_or(&[]) {
                let (_, addr, size) = &vm.symbols[i as usize];
                if *size == f.size {
                    *votes.entry(addr.wrapping_sub(f.offset)).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(u64, usize)> = votes.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let base = match ranked.as_slice() {
            [] => {
                if !funcs.is_empty() {
                    placed.notes.push(format!("{sname}: none of its {} functions is in vmlinux (discarded section?)", funcs.len()));
                }
                None
            }
            [(_, a), (_, b), ..] if a == b => {
                let names: Vec<&str> = funcs.iter().map(|f| f.name.as_str()).collect();
                placed.notes.push(format!(
                    "{sname}: ambiguous, {} places in vmlinux fit its functions ({}) equally; skipped",
                    ranked.iter().filter(|(_, v)| v == a).count(),
                    names.join(", ")
                ));
                None
            }
            [(base, _), ..] => Some(*base),
        };
        if let Some(base) = base {
            placed.bases.insert(sname.clone(), base);
            for f in &mut funcs {
                if vm.has_symbol_at(base + f.offset, &f.name, f.size) {
                    f.addr = Some(base + f.offset);
                } else if f.weak {
                    overridden.push(f.name.clone());
                } else {
                    placed.notes.push(format!("{sname}: {} is not where the rest of its section is in vmlinux", f.name));
                }
            }
        }
        let first = placed.functions.len();
        placed.functions.extend(funcs);
        // Coverage points of this section.
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(idx) = reloc.target() else { continue };
            if obj.symbol_by_index(idx).ok().and_then(|s| s.name().ok()) != Some(TRACE_PC) {
                continue;
            }
            let Some(base) = base else { continue };
            let function =
                placed.functions[first..].iter().position(|f| f.offset <= offset && offset < f.offset + f.size).map(|i| i + first);
            if function.is_some_and(|i| placed.functions[i].addr.is_none()) {
                placed.dead += 1;
                continue;
            }
            let pc = base + offset + 4;
            if vm.is_trace_pc_return(pc) {
                placed.points.push(Point { section: sname.clone(), offset, pc, function });
            } else if vm.bytes(pc - 5, 1) == Some(&[0xe9]) {
                placed.tail_calls += 1;
            } else {
                placed.notes.push(format!("{sname}+{offset:#x}: no call of {TRACE_PC} at {:#x} in vmlinux; left out", pc - 5));
            }
        }
    }
    if !overridden.is_empty() {
        placed.notes.push(format!(
            "{} __weak defaults another file overrides (dead code in vmlinux) left out: {}",
            overridden.len(),
            overridden.join(", ")
        ));
    }
    if placed.tail_calls > 0 {
        placed.notes.push(format!(
            "{} points are tail calls (jmp {TRACE_PC}): KCOV reports them as the caller's return address, so they are left out",
            placed.tail_calls
        ));
    }
    Ok(placed)
}

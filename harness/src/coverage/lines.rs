//! Source lines of coverage points, from the DWARF of an object compiled with `-g`.
//!
//! A relocatable object's DWARF addresses are relocations against its sections, each of which
//! starts at 0; the reader applies them with each executable section moved to a base of its
//! own (index << 32), so that `.text`, `.text.unlikely` and `.init.text` do not overlap.
//! A point inside code inlined from a header takes the line of the innermost frame that is in
//! the report's file (the call of the header function); its function is that frame's function
//! (a static function of the file inlined into another keeps its own name).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use gimli::{EndianSlice, LittleEndian, Reader, RelocateReader};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind};

use super::kbuild::normalize;

/// The value each relocated offset of one DWARF section reads as.
#[derive(Clone, Debug, Default)]
struct Relocs(Arc<HashMap<usize, u64>>);

impl gimli::read::Relocate for Relocs {
    fn relocate_address(&self, offset: usize, value: u64) -> gimli::Result<u64> {
        Ok(self.0.get(&offset).copied().unwrap_or(value))
    }
    fn relocate_offset(&self, offset: usize, value: usize) -> gimli::Result<usize> {
        Ok(self.0.get(&offset).map_or(value, |&v| v as usize))
    }
}

type Dwarf<'a> = RelocateReader<EndianSlice<'a, LittleEndian>, Relocs>;

/// Where a point is in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePoint {
    /// The function of the file the point's code belongs to.
    pub function: String,
    /// Its line in the file; none when every frame is in another file.
    pub line: Option<u32>,
}

/// What the DWARF of one object says about the points of its source file.
#[derive(Debug, Default)]
pub struct SourceMap {
    /// One per point asked, in order.
    pub points: Vec<SourcePoint>,
    /// Every function the file defines (DWARF subprograms declared in it): name -> line.
    pub functions: BTreeMap<String, u32>,
}

fn base(kind: SectionKind, index: object::SectionIndex) -> u64 {
    if kind == SectionKind::Text {
        (index.0 as u64) << 32
    } else {
        0
    }
}

/// Maps points (section name, offset of the call in it) of a `-g` object whose source is
/// `source` (relative to the tree: a DWARF path matches when it ends with it).
pub fn map_points(debug_object: &[u8], source: &Path, points: &[(String, u64)]) -> Result<SourceMap> {
    let obj = object::File::parse(debug_object).context("not an ELF object")?;
    let load = |id: gimli::SectionId| -> Result<Dwarf<'_>> {
        let Some(section) = obj.section_by_name(id.name()) else {
            return Ok(RelocateReader::new(EndianSlice::new(&[], LittleEndian), Relocs::default()));
        };
        if section.compressed_file_range().is_ok_and(|r| r.format != object::CompressionFormat::None) {
            bail!("{} is compressed", id.name());
        }
        let mut relocs = HashMap::new();
        for (offset, r) in section.relocations() {
            let RelocationTarget::Symbol(i) = r.target() else { continue };
            let sym = obj.symbol_by_index(i)?;
            let target_base = sym.section_index().and_then(|si| obj.section_by_index(si).ok()).map_or(0, |s| base(s.kind(), s.index()));
            relocs.insert(offset as usize, target_base.wrapping_add(sym.address()).wrapping_add(r.addend() as u64));
        }
        Ok(RelocateReader::new(EndianSlice::new(section.data()?, LittleEndian), Relocs(Arc::new(relocs))))
    };
    let dwarf = gimli::Dwarf::load(load)?;
    let in_file = |path: &Path| normalize(path).ends_with(source);
    let functions = defined_functions(&dwarf, &in_file)?;
    let ctx = addr2line::Context::from_dwarf(dwarf).context("reading DWARF")?;
    let mut mapped = Vec::with_capacity(points.len());
    for (section, offset) in points {
        let s = obj.section_by_name(section).with_context(|| format!("no section {section} in the -g object"))?;
        let addr = base(s.kind(), s.index()) + offset;
        let mut frames = ctx.find_frames(addr).skip_all_loads().context("reading DWARF frames")?;
        let (mut chosen, mut outermost) = (None, None);
        while let Some(frame) = frames.next().context("reading DWARF frames")? {
            let name = frame.function.as_ref().and_then(|f| f.raw_name().ok()).map(|n| n.into_owned());
            if chosen.is_none() {
                if let Some(loc) = frame.location.as_ref().filter(|l| l.file.is_some_and(|f| in_file(Path::new(f)))) {
                    chosen = Some(SourcePoint { function: name.clone().unwrap_or_default(), line: loc.line });
                }
            }
            outermost = name.or(outermost);
        }
        mapped.push(chosen.unwrap_or(SourcePoint { function: outermost.unwrap_or_default(), line: None }));
    }
    Ok(SourceMap { points: mapped, functions })
}

/// The functions (DWARF subprograms, not declarations) the file defines, with their lines.
fn defined_functions(dwarf: &gimli::Dwarf<Dwarf<'_>>, in_file: &dyn Fn(&Path) -> bool) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let Some(program) = unit.line_program.as_ref() else { continue };
        let lines = program.header();
        let mut entries = unit.entries();
        while let Some((_, e)) = entries.next_dfs()? {
            if e.tag() != gimli::DW_TAG_subprogram || e.attr(gimli::DW_AT_declaration)?.is_some() {
                continue;
            }
            let (Some(name), Some(file)) = (e.attr_value(gimli::DW_AT_name)?, e.attr_value(gimli::DW_AT_decl_file)?) else { continue };
            let index = match file {
                gimli::AttributeValue::FileIndex(i) => i,
                other => match other.udata_value() {
                    Some(i) => i,
                    None => continue,
                },
            };
            let Some(entry) = lines.file(index) else { continue };
            let mut path = PathBuf::new();
            if let Some(dir) = entry.directory(lines) {
                path.push(&*dwarf.attr_string(&unit, dir)?.to_string_lossy()?);
            }
            path.push(&*dwarf.attr_string(&unit, entry.path_name())?.to_string_lossy()?);
            if !in_file(&path) {
                continue;
            }
            let line = e.attr_value(gimli::DW_AT_decl_line)?.and_then(|v| v.udata_value()).unwrap_or(0) as u32;
            let name = dwarf.attr_string(&unit, name)?.to_string_lossy()?.into_owned();
            out.entry(name).or_insert(line);
        }
    }
    Ok(out)
}

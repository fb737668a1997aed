//! Embeds every scenario file, `corpus/scenarios/*.txt`, in the library
//! (`gmemfuzz::scenarios`), so that each copy of gmemfuzz (the one inside the lane's
//! initramfs too) runs the same scenarios, and no list of them is kept by hand.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../corpus/scenarios");
    // A directory: cargo reruns this when any file in it changes, or one is added or removed.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut list = String::from("&[\n");
    for path in &files {
        let name = path.file_stem().expect("a file name").to_str().expect("a UTF-8 file name");
        let path = path.canonicalize().expect("an existing file");
        writeln!(list, "    ({name:?}, include_str!({:?})),", path.to_str().expect("a UTF-8 path")).expect("writing to a String");
    }
    list.push_str("]\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("scenario_files.rs");
    std::fs::write(&out, list).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

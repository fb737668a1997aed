//! The guest_memfd files of a program, by `GmemId`: one entry per `create_gmem` op that
//! reached the kernel, `None` where the create failed, so that `g<n>` names the n-th
//! `create_gmem` op of the program whatever its outcome (and removing an op renumbers
//! from the program alone).

use std::ops::{Index, IndexMut};

use super::GmemFile;
use crate::op::GmemId;

#[derive(Clone, Default)]
pub struct Files {
    files: Vec<Option<GmemFile>>,
}

impl Files {
    /// Records a create: the file it made, or `None` where it failed.
    pub fn push(&mut self, file: Option<GmemFile>) {
        self.files.push(file);
    }

    /// The file `id` names, if its create made one.
    pub fn get(&self, id: GmemId) -> Option<&GmemFile> {
        self.files.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Every file made that an op can name (`GmemId` is a u8), with its id.
    pub fn iter(&self) -> impl Iterator<Item = (GmemId, &GmemFile)> {
        let nameable = u8::MAX as usize + 1;
        self.files.iter().take(nameable).enumerate().filter_map(|(i, f)| Some((GmemId(i as u8), f.as_ref()?)))
    }

    /// How many creates reached the kernel (made or not).
    pub fn creates(&self) -> usize {
        self.files.len()
    }
}

/// The file `id` names; the caller has looked it up (`Model::file`) already.
impl Index<GmemId> for Files {
    type Output = GmemFile;
    fn index(&self, id: GmemId) -> &GmemFile {
        self.get(id).expect("a file looked up before")
    }
}

impl IndexMut<GmemId> for Files {
    fn index_mut(&mut self, id: GmemId) -> &mut GmemFile {
        self.files.get_mut(id.0 as usize).and_then(Option::as_mut).expect("a file looked up before")
    }
}

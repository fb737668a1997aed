//! The guest_memfd files of a program, by `GmemId`: one entry per `create_gmem` op that
//! reached the kernel, `None` where the create failed, so that `g<n>` names the n-th
//! `create_gmem` op of the program whatever its outcome (and removing an op renumbers
//! from the program alone).
//!
//! Each file, and the list, is shared between clones of the model until one of them changes
//! it (the race search clones the model once per state it tries, and most steps touch one
//! file): a clone is one reference count.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use super::GmemFile;
use crate::op::GmemId;

#[derive(Clone, Default)]
pub struct Files {
    files: Arc<Vec<Option<Arc<GmemFile>>>>,
}

impl Files {
    /// Records a create: the file it made, or `None` where it failed.
    pub fn push(&mut self, file: Option<GmemFile>) {
        Arc::make_mut(&mut self.files).push(file.map(Arc::new));
    }

    /// The file `id` names, if its create made one.
    pub fn get(&self, id: GmemId) -> Option<&GmemFile> {
        self.files.get(id.0 as usize).and_then(Option::as_deref)
    }

    /// Every file made that an op can name (`GmemId` is a u8), with its id.
    pub fn iter(&self) -> impl Iterator<Item = (GmemId, &GmemFile)> {
        let nameable = u8::MAX as usize + 1;
        self.files.iter().take(nameable).enumerate().filter_map(|(i, f)| Some((GmemId(i as u8), f.as_deref()?)))
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
        let file = Arc::make_mut(&mut self.files).get_mut(id.0 as usize).and_then(Option::as_mut).expect("a file looked up before");
        let file = Arc::make_mut(file);
        // Whoever asks for the file mutably may change it.
        file.fingerprint = Default::default();
        file
    }
}

//! A file's page cache as the model holds it: the pages that exist, by file page index, and
//! which of them are prepared (cleared and marked uptodate by a fault).
//!
//! The pages live in chunks of `CHUNK` indices, each shared between clones of the model
//! until one of them changes it, with its part of the state's fingerprint kept until then:
//! the race search clones the model once per state it tries, and a step changes a page or
//! two of files that may hold hundreds (an allocate of a 2 MiB file makes 512).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::race::StateHasher;
use super::Page;

/// Page indices per chunk.
const CHUNK: u64 = 64;

#[derive(Clone, Default)]
pub struct PageCache {
    /// Chunks by ascending `index / CHUNK`; a chunk with no page is removed, so that equal
    /// caches have equal chunks. A vector: a file has a chunk or two, and the copy a change
    /// makes of a shared file is then one allocation (a map's is one per node, and its drop
    /// walks them).
    chunks: Vec<(u64, Arc<Chunk>)>,
    len: usize,
}

#[derive(Clone, Default)]
struct Chunk {
    /// Each page and whether it is prepared, by ascending index: a vector, so that the copy
    /// a change makes of a shared chunk is one allocation (a map's is one per node).
    pages: Vec<(u64, (Page, bool))>,
    fingerprint: super::memo::Memo,
}

impl Chunk {
    /// Where page `index` is, or would go.
    fn find(&self, index: u64) -> Result<usize, usize> {
        self.pages.binary_search_by_key(&index, |(i, _)| *i)
    }

    fn get(&self, index: u64) -> Option<&(Page, bool)> {
        self.find(index).ok().map(|at| &self.pages[at].1)
    }

    /// The pages in [first, end), ascending.
    fn range(&self, first: u64, end: u64) -> &[(u64, (Page, bool))] {
        let from = self.find(first).unwrap_or_else(|at| at);
        let to = self.find(end).unwrap_or_else(|at| at);
        &self.pages[from..to.max(from)]
    }
}

impl PageCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where chunk `key` is, or would go.
    fn find_chunk(&self, key: u64) -> Result<usize, usize> {
        self.chunks.binary_search_by_key(&key, |(k, _)| *k)
    }

    fn entry(&self, index: u64) -> Option<&(Page, bool)> {
        let at = self.find_chunk(index / CHUNK).ok()?;
        self.chunks[at].1.get(index)
    }

    pub fn get(&self, index: u64) -> Option<&Page> {
        self.entry(index).map(|(page, _)| page)
    }

    pub fn contains(&self, index: u64) -> bool {
        self.entry(index).is_some()
    }

    /// Whether the page exists and is prepared.
    pub fn is_prepared(&self, index: u64) -> bool {
        self.entry(index).is_some_and(|(_, prepared)| *prepared)
    }

    /// The chunk of `index`, to change (made, and unshared, as needed).
    fn chunk_mut(&mut self, index: u64) -> &mut Chunk {
        let key = index / CHUNK;
        let at = self.find_chunk(key).unwrap_or_else(|at| {
            self.chunks.insert(at, (key, Arc::default()));
            at
        });
        let chunk = Arc::make_mut(&mut self.chunks[at].1);
        chunk.fingerprint = Default::default();
        chunk
    }

    pub fn get_mut(&mut self, index: u64) -> Option<&mut Page> {
        if !self.contains(index) {
            return None;
        }
        let chunk = self.chunk_mut(index);
        let at = chunk.find(index).ok()?;
        Some(&mut chunk.pages[at].1 .0)
    }

    /// Makes the page exist (zero) if it does not, and marks it prepared if `prepare`.
    /// Whether it was made, and the page.
    pub fn populate(&mut self, index: u64, prepare: bool) -> (bool, &mut Page) {
        let made = !self.contains(index);
        self.len += usize::from(made);
        let chunk = self.chunk_mut(index);
        let at = match chunk.find(index) {
            Ok(at) => at,
            Err(at) => {
                chunk.pages.insert(at, (index, (Page::zero(), false)));
                at
            }
        };
        let (page, prepared) = &mut chunk.pages[at].1;
        *prepared |= prepare;
        (made, page)
    }

    /// Drops the page; what it held.
    pub fn remove(&mut self, index: u64) -> Option<Page> {
        if !self.contains(index) {
            return None;
        }
        let chunk = self.chunk_mut(index);
        let at = chunk.find(index).expect("looked up above");
        let (_, (page, _)) = chunk.pages.remove(at);
        if chunk.pages.is_empty() {
            let at = self.find_chunk(index / CHUNK).expect("the chunk of a page");
            self.chunks.remove(at);
        }
        self.len -= 1;
        Some(page)
    }

    /// Drops the pages in [first, end): each with its index, ascending. A chunk wholly inside
    /// the range goes whole, without the copy that unsharing it would make (a close or a
    /// large punch in a race search drops hundreds of pages of a chunk clones share), and a
    /// chunk cut by the range is copied once, not shifted once per page.
    pub fn remove_range(&mut self, first: u64, end: u64) -> Vec<(u64, Page)> {
        let mut dropped = Vec::new();
        if first >= end {
            return dropped;
        }
        let inside = |i: u64| first <= i && i < end;
        let whole = |c: &Chunk| c.pages.iter().all(|(i, _)| inside(*i));
        let from = self.find_chunk(first / CHUNK).unwrap_or_else(|at| at);
        let to = self.find_chunk((end - 1) / CHUNK).map_or_else(|at| at, |at| at + 1).max(from);
        for (_, chunk) in &mut self.chunks[from..to] {
            if whole(chunk) {
                dropped.extend(chunk.pages.iter().map(|(i, (page, _))| (*i, page.clone())));
            } else if chunk.pages.iter().any(|(i, _)| inside(*i)) {
                let chunk = Arc::make_mut(chunk);
                chunk.fingerprint = Default::default();
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut chunk.pages).into_iter().partition(|(i, _)| inside(*i));
                chunk.pages = kept;
                dropped.extend(gone.into_iter().map(|(i, (page, _))| (i, page)));
            }
        }
        // The chunks emptied are those wholly inside (a chunk is never empty otherwise).
        self.chunks.retain(|(_, c)| !whole(c));
        self.len -= dropped.len();
        dropped
    }

    /// Whether a page in [first, end) exists.
    pub fn any_in(&self, first: u64, end: u64) -> bool {
        let from = self.find_chunk(first / CHUNK).unwrap_or_else(|at| at);
        self.chunks[from..].iter().take_while(|(key, _)| *key * CHUNK < end).any(|(_, c)| !c.range(first, end).is_empty())
    }

    /// Every page, by ascending index.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Page)> {
        self.chunks.iter().flat_map(|(_, c)| c.pages.iter().map(|(i, (page, _))| (*i, page)))
    }

    /// The indices of the pages in [first, end), ascending.
    pub fn indices_in(&self, first: u64, end: u64) -> Vec<u64> {
        if first >= end {
            return Vec::new();
        }
        let from = self.find_chunk(first / CHUNK).unwrap_or_else(|at| at);
        let to = self.find_chunk((end - 1) / CHUNK).map_or_else(|at| at, |at| at + 1);
        self.chunks[from..to.max(from)].iter().flat_map(|(_, c)| c.range(first, end).iter().map(|(i, _)| *i)).collect()
    }

    /// The prepared pages' indices, ascending.
    pub fn prepared(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|(_, c)| c.pages.iter().filter(|(_, (_, prepared))| *prepared).map(|(i, _)| *i))
    }

    /// Feeds the cache's content (indices, page contents, prepared) to `h`; each chunk's part
    /// is computed once per version of the chunk.
    pub(super) fn hash_into(&self, h: &mut impl Hasher) {
        for (key, chunk) in &self.chunks {
            let print = chunk.fingerprint.get_or_init(|| {
                let mut ch = StateHasher::default();
                for (index, (page, prepared)) in &chunk.pages {
                    (index, page.content_hash(), prepared).hash(&mut ch);
                }
                ch.finish()
            });
            (key, print).hash(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_and_go_across_chunks_and_clones_do_not_see_each_others_changes() {
        let mut cache = PageCache::default();
        assert!(cache.populate(3, false).0 && !cache.populate(3, true).0, "made once");
        cache.populate(CHUNK + 1, true).1.store(0, 8, 0x55);
        let copy = cache.clone();
        assert_eq!(cache.remove(3).map(|p| p.load(0, 8)), Some(0));
        assert_eq!((cache.len(), copy.len()), (1, 2));
        assert!(copy.is_prepared(3) && !cache.contains(3));
        assert_eq!(cache.indices_in(0, 2 * CHUNK), vec![CHUNK + 1]);
        assert_eq!(copy.prepared().collect::<Vec<_>>(), vec![3, CHUNK + 1]);
        cache.remove(CHUNK + 1);
        assert!(cache.is_empty() && cache.chunks.is_empty(), "an empty chunk goes");
    }

    #[test]
    fn a_range_drops_whole_chunks_and_cuts_the_others_leaving_clones_as_they_were() {
        let mut cache = PageCache::default();
        let made = [1, 5, CHUNK, CHUNK + 9, 2 * CHUNK + 3, 3 * CHUNK];
        for &i in &made {
            cache.populate(i, true).1.store(0, 8, i);
        }
        let copy = cache.clone();
        assert!(cache.any_in(2, CHUNK + 1) && !cache.any_in(6, CHUNK) && !cache.any_in(3 * CHUNK + 1, 4 * CHUNK));
        let dropped = cache.remove_range(5, 2 * CHUNK + 4);
        let indices: Vec<u64> = dropped.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, vec![5, CHUNK, CHUNK + 9, 2 * CHUNK + 3], "ascending");
        assert!(dropped.iter().all(|(i, page)| page.load(0, 8) == *i), "each page with its content");
        assert_eq!(cache.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![1, 3 * CHUNK]);
        assert_eq!((cache.len(), cache.chunks.len()), (2, 2), "the chunks wholly inside went");
        assert_eq!(copy.iter().map(|(i, _)| i).collect::<Vec<_>>(), made.to_vec(), "the clone kept every page");
        assert!(cache.remove_range(6, CHUNK).is_empty() && cache.len() == 2);
    }
}

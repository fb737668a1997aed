//! Page contents and their history, for predictions and for explaining divergences.

use std::collections::HashMap;
use std::sync::Arc;

use crate::op::PAGE_SIZE;

pub type PageBytes = [u8; PAGE_SIZE as usize];

/// Where a page of memory lives, as the model names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageKey {
    /// Page `index` of guest_memfd `gmem` (its page cache).
    Gmem { gmem: u8, index: u64 },
    /// Page `index` of the anonymous memory behind the shared side of memslot `slot`.
    Anon { slot: u32, index: u64 },
}

impl std::fmt::Display for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageKey::Gmem { gmem, index } => write!(f, "g{gmem} page {index}"),
            PageKey::Anon { slot, index } => write!(f, "anon page {index} of slot {slot}"),
        }
    }
}

/// One event in a page's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageEvent {
    /// First touched or allocated: content zero.
    Populated { by: &'static str },
    /// A store of `width` bytes at `offset`: `old` was there before.
    Written { by: &'static str, offset: u16, width: u8, old: u64, new: u64 },
    /// Freed (punch-hole, release, unbind of anonymous memory): the page held `content`.
    Dropped { by: &'static str, content: Dropped },
}

/// What a dropped page held: shared with the page it was (no copy, and its digest is
/// computed only when an explanation shows it).
#[derive(Clone, PartialEq, Eq)]
pub struct Dropped(Page);

impl Dropped {
    /// `outcome::page_digest` of the content.
    pub fn digest(&self) -> u32 {
        self.0.digest()
    }
}

impl std::fmt::Debug for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content digest {:#010x}", self.digest())
    }
}

/// A page whose content the model knows. The bytes are shared between clones until one
/// of them stores (the race search clones the model once per state it tries); a store to
/// shared bytes goes to a few qwords kept beside them (`Patch`) rather than copying the
/// page, which happens only once the patch is full. The patch is shared too, behind an Arc,
/// so that a page stays three words (pages fill chunks and history events by the hundred).
#[derive(Clone)]
pub struct Page {
    bytes: Arc<PageBytes>,
    /// Qwords stored over `bytes` while they were shared; `None` where there are none.
    patch: Option<Arc<Patch>>,
    /// A hash of the content, kept up to date by `store` (see `content_hash`).
    hash: u64,
}

/// How many stored qwords a page keeps beside shared bytes before it copies them: a racing
/// member stores to a qword or two of a page, again and again.
const PATCH_QWORDS: usize = 4;

/// Qwords that replace those of a page's shared bytes: distinct indices, in no order.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Patch {
    len: u8,
    index: [u16; PATCH_QWORDS],
    value: [u64; PATCH_QWORDS],
}

impl Patch {
    fn get(&self, index: usize) -> Option<u64> {
        (0..self.len as usize).find(|&i| self.index[i] as usize == index).map(|i| self.value[i])
    }

    /// Sets qword `index`; false where the patch is full and does not hold it.
    fn set(&mut self, index: usize, value: u64) -> bool {
        let len = self.len as usize;
        let at = (0..len).find(|&i| self.index[i] as usize == index).unwrap_or(len);
        if at == PATCH_QWORDS {
            return false;
        }
        self.index[at] = index as u16;
        self.value[at] = value;
        self.len = self.len.max(at as u8 + 1);
        true
    }

    fn entries(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..self.len as usize).map(|i| (self.index[i] as usize, self.value[i]))
    }
}

/// One qword's part of a page's hash: its index and value, mixed (splitmix64's finalizer).
fn qword_mix(index: usize, value: u64) -> u64 {
    let mut z = value ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes every zero page shares.
fn zero_bytes() -> &'static Arc<PageBytes> {
    static ZERO: std::sync::OnceLock<Arc<PageBytes>> = std::sync::OnceLock::new();
    ZERO.get_or_init(|| Arc::new([0u8; PAGE_SIZE as usize]))
}

/// The hash of an all-zero page.
fn zero_hash() -> u64 {
    static ZERO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| (0..QWORDS).fold(0u64, |h, i| h.wrapping_add(qword_mix(i, 0))))
}

/// Qwords per page.
const QWORDS: usize = PAGE_SIZE as usize / 8;

/// Pages are equal where their contents are.
impl PartialEq for Page {
    fn eq(&self, other: &Page) -> bool {
        if self.hash != other.hash {
            return false;
        }
        if Arc::ptr_eq(&self.bytes, &other.bytes) && self.patch == other.patch {
            return true;
        }
        (0..QWORDS).all(|q| self.qword(q) == other.qword(q))
    }
}

impl Eq for Page {}

impl Page {
    /// A zero page: its bytes are one page shared by all zero pages until one is stored to.
    pub fn zero() -> Page {
        Page { bytes: zero_bytes().clone(), patch: None, hash: zero_hash() }
    }

    /// `outcome::page_digest` of the content (known without hashing for a page never stored to).
    pub fn digest(&self) -> u32 {
        static ZERO: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        if Arc::ptr_eq(&self.bytes, zero_bytes()) && self.patch.is_none() {
            return *ZERO.get_or_init(|| crate::outcome::page_digest(zero_bytes()));
        }
        crate::outcome::page_digest(&self.shared_bytes())
    }

    /// A hash of the content: the sum of each qword's mix, so a store updates it in O(1).
    /// Equal contents have equal hashes (the race search deduplicates states by it).
    pub fn content_hash(&self) -> u64 {
        self.hash
    }

    fn qword(&self, index: usize) -> u64 {
        let patched = self.patch.as_ref().and_then(|p| p.get(index));
        patched.unwrap_or_else(|| u64::from_le_bytes(self.bytes[index * 8..index * 8 + 8].try_into().expect("8 bytes")))
    }

    /// The content, shared where nothing is patched over the bytes (else a copy with the
    /// patch applied; a store to this page later copies shared bytes first).
    pub fn shared_bytes(&self) -> Arc<PageBytes> {
        let mut bytes = self.bytes.clone();
        if let Some(patch) = &self.patch {
            apply(Arc::make_mut(&mut bytes), patch);
        }
        bytes
    }

    /// Little-endian load of `width` bytes; the caller keeps the access inside the page.
    pub fn load(&self, offset: u64, width: u64) -> u64 {
        let (first, shift) = ((offset / 8) as usize, 8 * (offset % 8) as u32);
        let last = ((offset + width.max(1) - 1) / 8) as usize;
        let low = u128::from(self.qword(first));
        let both = if last == first { low } else { low | u128::from(self.qword(last)) << 64 };
        let mask = if width >= 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
        (both >> shift) as u64 & mask
    }

    /// Little-endian store; returns what was there before.
    pub fn store(&mut self, offset: u64, width: u64, value: u64) -> u64 {
        let old = self.load(offset, width);
        if width == 0 {
            return old;
        }
        let (first, shift) = ((offset / 8) as usize, 8 * (offset % 8) as u32);
        let last = ((offset + width - 1) / 8) as usize;
        let mask = (if width >= 8 { u128::from(u64::MAX) } else { (1u128 << (8 * width)) - 1 }) << shift;
        let value = u128::from(value) << shift & mask;
        for (q, part) in [(first, 0), (last, 64)].into_iter().take(1 + usize::from(last != first)) {
            let before = self.qword(q);
            let after = (before & !((mask >> part) as u64)) | (value >> part) as u64;
            self.hash = self.hash.wrapping_sub(qword_mix(q, before)).wrapping_add(qword_mix(q, after));
            self.set_qword(q, after);
        }
        old
    }

    /// Writes qword `index`: into the bytes where this page alone holds them, else into the
    /// patch, copying the bytes (with the patch applied) only where the patch is full.
    fn set_qword(&mut self, index: usize, value: u64) {
        if Arc::get_mut(&mut self.bytes).is_none() {
            let patch = Arc::make_mut(self.patch.get_or_insert_with(Default::default));
            if patch.set(index, value) {
                return;
            }
        }
        let bytes = Arc::make_mut(&mut self.bytes);
        if let Some(patch) = self.patch.take() {
            apply(bytes, &patch);
        }
        bytes[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes the patch's qwords into `bytes`.
fn apply(bytes: &mut PageBytes, patch: &Patch) {
    for (q, v) in patch.entries() {
        bytes[q * 8..q * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// The last few events of every page the model has seen, keyed by op index. Cheap to clone
/// and to record into while shared (the race search clones the model once per state it
/// tries): new events go to a short list of their own, and are settled into the maps that
/// clones share only once it is long.
#[derive(Default, Clone)]
pub struct History {
    settled: Arc<Settled>,
    /// Events since the last settling, newest first: a list whose tail clones share.
    recent: Option<Arc<Recent>>,
    recent_len: usize,
}

/// One event not yet settled, with a dropped page's content, and the ones before it.
struct Recent {
    op_index: usize,
    key: PageKey,
    event: PageEvent,
    dropped: Option<Page>,
    before: Option<Arc<Recent>>,
}

impl History {
    /// The unsettled events, newest first.
    fn recent(&self) -> impl Iterator<Item = &Recent> {
        std::iter::successors(self.recent.as_deref(), |r| r.before.as_deref())
    }
}

#[derive(Default, Clone)]
struct Settled {
    events: HashMap<PageKey, Vec<(usize, PageEvent)>, KeyHasher>,
    /// Content of pages as they were when last dropped: a read that returns this content
    /// after the drop is a stale read.
    dropped: HashMap<PageKey, (usize, Page), KeyHasher>,
}

/// Page keys are the model's own, not an attacker's: the state hasher spreads them well at a
/// fraction of SipHash's cost.
type KeyHasher = std::hash::BuildHasherDefault<super::race::StateHasher>;

/// How many events a page keeps; older ones are forgotten.
const EVENTS_PER_PAGE: usize = 16;
/// How many events wait in `recent` before they are settled, where the settled maps are
/// this history's alone.
const RECENT_EVENTS: usize = 32;
/// How many wait before they are settled all the same.
const MAX_RECENT_EVENTS: usize = 256;

impl History {
    pub fn record(&mut self, op_index: usize, key: PageKey, event: PageEvent) {
        self.push(op_index, key, event, None);
    }

    pub fn record_drop(&mut self, op_index: usize, key: PageKey, by: &'static str, page: &Page) {
        self.push(op_index, key, PageEvent::Dropped { by, content: Dropped(page.clone()) }, Some(page.clone()));
    }

    fn push(&mut self, op_index: usize, key: PageKey, event: PageEvent, dropped: Option<Page>) {
        self.recent = Some(Arc::new(Recent { op_index, key, event, dropped, before: self.recent.take() }));
        self.recent_len += 1;
        // Settling copies the maps where clones share them: a search's states wait (their
        // events are few), up to a bound that keeps lookups short.
        let settles = Arc::get_mut(&mut self.settled).is_some() || self.recent_len >= MAX_RECENT_EVENTS;
        if self.recent_len >= RECENT_EVENTS && settles {
            let list = self.recent.take();
            let mut oldest_first: Vec<&Recent> = std::iter::successors(list.as_deref(), |r| r.before.as_deref()).collect();
            oldest_first.reverse();
            let settled = Arc::make_mut(&mut self.settled);
            for r in oldest_first {
                let (op_index, key, event, dropped) = (r.op_index, r.key, r.event.clone(), r.dropped.clone());
                let events = settled.events.entry(key).or_default();
                if events.len() == EVENTS_PER_PAGE {
                    events.remove(0);
                }
                events.push((op_index, event));
                if let Some(page) = dropped {
                    settled.dropped.insert(key, (op_index, page));
                }
            }
            self.recent_len = 0;
        }
    }

    /// The page's last events (at most `EVENTS_PER_PAGE`), oldest first.
    pub fn events(&self, key: &PageKey) -> Vec<(usize, PageEvent)> {
        let mut events = self.settled.events.get(key).cloned().unwrap_or_default();
        let mut recent: Vec<(usize, PageEvent)> = self.recent().filter(|r| r.key == *key).map(|r| (r.op_index, r.event.clone())).collect();
        recent.reverse();
        events.extend(recent);
        let excess = events.len().saturating_sub(EVENTS_PER_PAGE);
        events.drain(..excess);
        events
    }

    /// Whether the page has an event.
    pub fn has_events(&self, key: &PageKey) -> bool {
        self.settled.events.contains_key(key) || self.recent().any(|r| r.key == *key)
    }

    /// The content the page held before it was last dropped, and the op that dropped it.
    pub fn before_drop(&self, key: &PageKey) -> Option<(usize, Arc<PageBytes>)> {
        let recent = self.recent().find_map(|r| r.dropped.as_ref().filter(|_| r.key == *key).map(|p| (r.op_index, p)));
        recent.or_else(|| self.settled.dropped.get(key).map(|(i, p)| (*i, p))).map(|(i, p)| (i, p.shared_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's bytes as a plain array, from loads alone.
    fn content(page: &Page) -> Vec<u64> {
        (0..QWORDS as u64).map(|q| page.load(q * 8, 8)).collect()
    }

    #[test]
    fn stores_to_shared_bytes_patch_then_copy_and_clones_keep_their_content() {
        let mut page = Page::zero();
        page.store(8, 8, 0x1122_3344_5566_7788);
        let shared = page.clone();
        let mut expected = content(&page);
        // Straddling two qwords, then more qwords than a patch holds.
        page.store(14, 4, 0xaabb_ccdd);
        expected[1] = (expected[1] & 0x0000_ffff_ffff_ffff) | 0xccdd << 48;
        expected[2] = 0xaabb;
        for q in 3..3 + PATCH_QWORDS as u64 + 2 {
            page.store(q * 8 + 1, 2, q);
            expected[q as usize] = q << 8;
            assert_eq!(content(&page), expected, "after qword {q}");
        }
        assert_eq!(page.load(15, 2), 0xbbcc, "a load across the qwords");
        assert_eq!(content(&shared)[1..3], [0x1122_3344_5566_7788, 0], "the clone kept its bytes");
        let bytes = page.shared_bytes();
        let flat: Vec<u64> = bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(flat, expected, "the bytes with the patch applied");
        let mut again = shared.clone();
        again.store(14, 4, 0xaabb_ccdd);
        for q in 3..3 + PATCH_QWORDS as u64 + 2 {
            again.store(q * 8 + 1, 2, q);
        }
        assert!(again == page && again.content_hash() == page.content_hash(), "equal content, equal pages");
        assert!(shared != page);
    }
}

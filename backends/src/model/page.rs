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
    /// Freed (punch-hole, release, unbind of anonymous memory): the page held `digest`.
    Dropped { by: &'static str, digest: u32 },
}

/// A page whose content the model knows. The bytes are shared between clones until one
/// of them stores (the race search clones the model once per state it tries).
#[derive(Clone)]
pub struct Page {
    bytes: Arc<PageBytes>,
    /// A hash of the content, kept up to date by `store` (see `content_hash`).
    hash: u64,
}

/// One qword's part of a page's hash: its index and value, mixed (splitmix64's finalizer).
fn qword_mix(index: usize, value: u64) -> u64 {
    let mut z = value ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of an all-zero page.
fn zero_hash() -> u64 {
    static ZERO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| (0..PAGE_SIZE as usize / 8).fold(0u64, |h, i| h.wrapping_add(qword_mix(i, 0))))
}

impl Page {
    pub fn zero() -> Page {
        Page { bytes: Arc::new([0u8; PAGE_SIZE as usize]), hash: zero_hash() }
    }

    /// A hash of the content: the sum of each qword's mix, so a store updates it in O(1).
    /// Equal contents have equal hashes (the race search deduplicates states by it).
    pub fn content_hash(&self) -> u64 {
        self.hash
    }

    fn qword(&self, index: usize) -> u64 {
        u64::from_le_bytes(self.bytes[index * 8..index * 8 + 8].try_into().expect("8 bytes"))
    }

    pub fn bytes(&self) -> &PageBytes {
        &self.bytes
    }

    /// Little-endian load of `width` bytes; the caller keeps the access inside the page.
    pub fn load(&self, offset: u64, width: u64) -> u64 {
        let mut v = 0u64;
        for i in (0..width).rev() {
            v = (v << 8) | self.bytes[(offset + i) as usize] as u64;
        }
        v
    }

    /// Little-endian store; returns what was there before.
    pub fn store(&mut self, offset: u64, width: u64, value: u64) -> u64 {
        let old = self.load(offset, width);
        let qwords = (offset / 8) as usize..=((offset + width.max(1) - 1) / 8) as usize;
        for q in qwords.clone() {
            self.hash = self.hash.wrapping_sub(qword_mix(q, self.qword(q)));
        }
        let bytes = Arc::make_mut(&mut self.bytes);
        for i in 0..width {
            bytes[(offset + i) as usize] = (value >> (8 * i)) as u8;
        }
        for q in qwords {
            self.hash = self.hash.wrapping_add(qword_mix(q, self.qword(q)));
        }
        old
    }
}

/// The last few events of every page the model has seen, keyed by op index. Shared
/// between clones of the model until one of them records (as `Page`).
#[derive(Default, Clone)]
pub struct History {
    events: Arc<HashMap<PageKey, Vec<(usize, PageEvent)>>>,
    /// Content of pages as they were when last dropped: a read that returns this content
    /// after the drop is a stale read.
    dropped: Arc<HashMap<PageKey, (usize, Arc<PageBytes>)>>,
}

/// How many events a page keeps; older ones are forgotten.
const EVENTS_PER_PAGE: usize = 16;

impl History {
    pub fn record(&mut self, op_index: usize, key: PageKey, event: PageEvent) {
        let events = Arc::make_mut(&mut self.events).entry(key).or_default();
        if events.len() == EVENTS_PER_PAGE {
            events.remove(0);
        }
        events.push((op_index, event));
    }

    pub fn record_drop(&mut self, op_index: usize, key: PageKey, by: &'static str, page: &Page) {
        let digest = crate::outcome::page_digest(page.bytes());
        self.record(op_index, key, PageEvent::Dropped { by, digest });
        Arc::make_mut(&mut self.dropped).insert(key, (op_index, page.bytes.clone()));
    }

    pub fn events(&self, key: &PageKey) -> &[(usize, PageEvent)] {
        self.events.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The content the page held before it was last dropped, and the op that dropped it.
    pub fn before_drop(&self, key: &PageKey) -> Option<(usize, &PageBytes)> {
        self.dropped.get(key).map(|(i, b)| (*i, &**b))
    }
}

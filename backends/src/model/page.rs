//! Page contents and their history, for predictions and for explaining divergences.

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

/// A page whose content the model knows.
#[derive(Clone)]
pub struct Page {
    bytes: Box<PageBytes>,
}

impl Page {
    pub fn zero() -> Page {
        Page { bytes: Box::new([0u8; PAGE_SIZE as usize]) }
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
        for i in 0..width {
            self.bytes[(offset + i) as usize] = (value >> (8 * i)) as u8;
        }
        old
    }
}

/// The last few events of every page the model has seen, keyed by op index.
#[derive(Default, Clone)]
pub struct History {
    events: std::collections::HashMap<PageKey, Vec<(usize, PageEvent)>>,
    /// Content of pages as they were when last dropped: a read that returns this content
    /// after the drop is a stale read.
    dropped: std::collections::HashMap<PageKey, (usize, Box<PageBytes>)>,
}

/// How many events a page keeps; older ones are forgotten.
const EVENTS_PER_PAGE: usize = 16;

impl History {
    pub fn record(&mut self, op_index: usize, key: PageKey, event: PageEvent) {
        let events = self.events.entry(key).or_default();
        if events.len() == EVENTS_PER_PAGE {
            events.remove(0);
        }
        events.push((op_index, event));
    }

    pub fn record_drop(&mut self, op_index: usize, key: PageKey, by: &'static str, page: &Page) {
        let digest = crate::outcome::page_digest(page.bytes());
        self.record(op_index, key, PageEvent::Dropped { by, digest });
        self.dropped.insert(key, (op_index, page.bytes.clone()));
    }

    pub fn events(&self, key: &PageKey) -> &[(usize, PageEvent)] {
        self.events.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The content the page held before it was last dropped, and the op that dropped it.
    pub fn before_drop(&self, key: &PageKey) -> Option<(usize, &PageBytes)> {
        self.dropped.get(key).map(|(i, b)| (*i, &**b))
    }
}

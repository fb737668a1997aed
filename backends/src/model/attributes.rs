//! Memory attributes by GFN range: kvm->mem_attr_array as the model holds it. One entry per
//! range, not per GFN, so a set over 2^21 pages costs what a set over one page does.

use std::collections::BTreeMap;

/// Attributes by GFN range, `start -> (end, attributes)`: ranges never overlap and never
/// hold 0, as in the kernel, where a GFN set to 0 has no entry
/// (kvm_vm_set_mem_attributes(): `entry = attributes ? xa_mk_value(attributes) : NULL;`).
/// Shared between clones of the model until one of them sets attributes (the race search
/// clones the model once per state it tries).
#[derive(Clone, Default, Debug)]
pub struct AttributeRanges {
    ranges: std::sync::Arc<BTreeMap<u64, (u64, u64)>>,
}

impl AttributeRanges {
    /// The attributes of one GFN (0 where none are set).
    pub fn get(&self, gfn: u64) -> u64 {
        self.ranges.range(..=gfn).next_back().filter(|(_, (end, _))| gfn < *end).map_or(0, |(_, (_, a))| *a)
    }

    /// The ranges that meet [start, end), in order.
    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64, u64)> {
        let before = self.ranges.range(..start).next_back().filter(|(_, (e, _))| *e > start);
        before.into_iter().chain(self.ranges.range(start..end)).map(|(&s, &(e, a))| (s, e, a)).collect()
    }

    /// Whether every GFN of [start, end) has exactly `attributes`: the kernel's "nothing to
    /// do" test, kvm_range_has_memory_attributes(kvm, start, end, ~0, attributes).
    pub fn uniform(&self, start: u64, end: u64, attributes: u64) -> bool {
        let ranges = self.overlapping(start, end);
        if attributes == 0 {
            return ranges.is_empty();
        }
        let mut at = start;
        for (s, e, a) in ranges {
            if s > at || a != attributes {
                return false;
            }
            at = e;
        }
        at >= end
    }

    /// Sets [start, end) to `attributes`, splitting the ranges it cuts.
    pub fn set(&mut self, start: u64, end: u64, attributes: u64) {
        let overlapping = self.overlapping(start, end);
        let ranges = std::sync::Arc::make_mut(&mut self.ranges);
        for (s, e, a) in overlapping {
            ranges.remove(&s);
            if s < start {
                ranges.insert(s, (start, a));
            }
            if e > end {
                ranges.insert(end, (e, a));
            }
        }
        if attributes != 0 {
            ranges.insert(start, (end, attributes));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// `(start, end, attributes)` of every range, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &(e, a))| (s, e, a))
    }
}

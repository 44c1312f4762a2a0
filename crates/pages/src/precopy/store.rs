//! The destination's content-addressed page store: each distinct page once, in slabs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ferry_proto::precopy::{PageHash, PAGE};

const SLAB_PAGES: usize = 4096;

#[derive(Debug)]
pub struct PageStore {
    index: HashMap<PageHash, u32>,
    slabs: Vec<Vec<u8>>,
    len: usize,
    max_pages: usize,
    /// Shared with the other stores of this process; each slab is taken from it.
    budget: Option<Arc<Budget>>,
    reserved: u64,
}

/// What all the page stores of a process may take together.
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
}

impl Budget {
    pub fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicU64::new(bytes),
        })
    }

    fn take(&self, n: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(n))
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

/// The budget every page store of this process shares: half of the memory available
/// when the first was made.
pub fn shared_budget() -> Arc<Budget> {
    static SHARED: OnceLock<Arc<Budget>> = OnceLock::new();
    SHARED.get_or_init(|| Budget::new(default_limit())).clone()
}

const SLAB_BYTES: u64 = (SLAB_PAGES * PAGE) as u64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("the destination's page store is full ({0} pages); it has too little memory for this pre-copy")]
    Full(usize),
    #[error("the destination's page stores together reached their limit, half of its available memory, with {0} pages in this one; wait for its other migrations to end")]
    Shared(usize),
    #[error("the source referred to a page the destination never received")]
    Unknown,
}

impl PageStore {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            index: HashMap::new(),
            slabs: Vec::new(),
            len: 0,
            max_pages: (max_bytes / PAGE as u64) as usize,
            budget: None,
            reserved: 0,
        }
    }

    /// A store that also takes its memory from `budget`, with the other stores that
    /// share it.
    pub fn sharing(max_bytes: u64, budget: Arc<Budget>) -> Self {
        let mut s = Self::new(max_bytes);
        s.budget = Some(budget);
        s
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, h: PageHash) -> bool {
        self.index.contains_key(&h)
    }

    /// Keeps a page; a page already held is not stored twice.
    pub fn insert(&mut self, h: PageHash, page: &[u8]) -> Result<(), StoreError> {
        if self.index.contains_key(&h) {
            return Ok(());
        }
        if self.len >= self.max_pages {
            return Err(StoreError::Full(self.len));
        }
        let slot = self.len;
        if slot.is_multiple_of(SLAB_PAGES) {
            if let Some(b) = &self.budget {
                if !b.take(SLAB_BYTES) {
                    return Err(StoreError::Shared(self.len));
                }
                self.reserved += SLAB_BYTES;
            }
            self.slabs.push(Vec::with_capacity(SLAB_PAGES * PAGE));
        }
        if let Some(slab) = self.slabs.last_mut() {
            slab.extend_from_slice(&page[..PAGE]);
        }
        self.index.insert(h, slot as u32);
        self.len += 1;
        Ok(())
    }

    pub fn get(&self, h: PageHash) -> Result<&[u8], StoreError> {
        let slot = *self.index.get(&h).ok_or(StoreError::Unknown)? as usize;
        let off = (slot % SLAB_PAGES) * PAGE;
        Ok(&self.slabs[slot / SLAB_PAGES][off..off + PAGE])
    }
}

impl Drop for PageStore {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.reserved);
        }
    }
}

/// How much memory a store may take here: half of what the kernel reports available.
pub fn default_limit() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kb| kb * 1024 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_sharing_a_budget_take_it_slab_by_slab_and_give_it_back() {
        let budget = Budget::new(2 * SLAB_BYTES);
        let page = vec![1u8; PAGE];
        let mut a = PageStore::sharing(1 << 40, budget.clone());
        let mut b = PageStore::sharing(1 << 40, budget.clone());
        a.insert(1, &page).unwrap();
        b.insert(1, &page).unwrap();
        // Both slabs are taken: a new slab in either store is refused.
        for i in 2..=SLAB_PAGES as u128 {
            a.insert(i, &page).unwrap();
        }
        let full = a.insert(SLAB_PAGES as u128 + 1, &page);
        assert_eq!(full, Err(StoreError::Shared(SLAB_PAGES)));
        drop(b);
        a.insert(SLAB_PAGES as u128 + 1, &page).unwrap();
    }

    #[test]
    fn pages_are_kept_once_and_found_by_hash() {
        let mut s = PageStore::new(1 << 40);
        for i in 0..5000u32 {
            let page = vec![(i % 251) as u8; PAGE];
            s.insert(u128::from(i % 251), &page).unwrap();
        }
        assert_eq!(s.len(), 251);
        assert_eq!(s.get(17).unwrap()[0], 17);
        assert_eq!(s.get(999), Err(StoreError::Unknown));
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut s = PageStore::new(2 * PAGE as u64);
        s.insert(1, &[0u8; PAGE]).unwrap();
        s.insert(2, &[0u8; PAGE]).unwrap();
        assert_eq!(s.insert(3, &[0u8; PAGE]), Err(StoreError::Full(2)));
        s.insert(2, &[0u8; PAGE]).unwrap();
    }
}

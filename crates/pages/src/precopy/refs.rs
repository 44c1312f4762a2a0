//! Hybrid migration's post-copy pages as references: the source names a page the
//! destination's store holds by its hash instead of sending it (format in
//! `ferry_proto::postcopy`, `REF_ENTRY`).

use std::collections::HashSet;

use ferry_proto::postcopy::{REF_ENTRY, REF_TAG_HELD, REF_TAG_PAGE};
use ferry_proto::precopy::{PageHash, HASH_LEN, PAGE};

use super::hash::PageHasher;
use super::store::PageStore;

/// The source's side: what the destination's store holds.
#[derive(Debug)]
pub struct Dedupe {
    pub hasher: PageHasher,
    pub held: HashSet<PageHash>,
}

impl Dedupe {
    /// Encodes `data` (whole pages) as entries followed by the pages not held, or
    /// `None` when no page is held (the plain form is then smaller).
    pub fn encode(&self, data: &[u8]) -> Option<Vec<u8>> {
        let pages = data.len() / PAGE;
        let mut entries = Vec::with_capacity(pages * REF_ENTRY);
        let mut missing: Vec<&[u8]> = Vec::new();
        for page in data.chunks_exact(PAGE) {
            let h = self.hasher.hash(page);
            if self.held.contains(&h) {
                entries.push(REF_TAG_HELD);
            } else {
                entries.push(REF_TAG_PAGE);
                missing.push(page);
            }
            entries.extend_from_slice(&h.to_le_bytes());
        }
        if missing.len() == pages {
            return None;
        }
        for p in missing {
            entries.extend_from_slice(p);
        }
        Some(entries)
    }
}

/// How many pages follow `entries` (those tagged as sent whole); an unknown tag is an
/// error.
pub fn pages_following(entries: &[u8]) -> Result<usize, String> {
    entries
        .chunks_exact(REF_ENTRY)
        .try_fold(0usize, |n, e| match e[0] {
            REF_TAG_PAGE => Ok(n + 1),
            REF_TAG_HELD => Ok(n),
            t => Err(format!("unknown page reference tag {t}")),
        })
}

/// The destination's side: rebuilds the pages from `entries`, the `pages` that followed
/// them, and the store.
pub fn expand(store: &PageStore, entries: &[u8], pages: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(entries.len() / REF_ENTRY * PAGE);
    let mut next = pages.chunks_exact(PAGE);
    for e in entries.chunks_exact(REF_ENTRY) {
        if e[0] == REF_TAG_PAGE {
            out.extend_from_slice(next.next().ok_or("fewer pages than announced")?);
        } else {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(&e[1..]);
            let page = store
                .get(u128::from_le_bytes(h))
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(page);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_pages_travel_as_hashes_and_come_back_whole() {
        let hasher = PageHasher::fixed(3);
        let a = vec![1u8; PAGE];
        let b = vec![2u8; PAGE];
        let mut store = PageStore::new(1 << 20);
        store.insert(hasher.hash(&a), &a).unwrap();
        let d = Dedupe {
            held: [hasher.hash(&a)].into_iter().collect(),
            hasher,
        };
        let data = [a.clone(), b.clone(), a.clone()].concat();
        let enc = d.encode(&data).unwrap();
        assert_eq!(enc.len(), 3 * REF_ENTRY + PAGE);
        let (entries, pages) = enc.split_at(3 * REF_ENTRY);
        assert_eq!(pages_following(entries), Ok(1));
        assert_eq!(expand(&store, entries, pages).unwrap(), data);
        assert!(d.encode(&b).is_none(), "nothing held: plain");
    }

    #[test]
    fn a_reference_to_a_page_never_sent_is_refused() {
        let store = PageStore::new(1 << 20);
        let mut e = vec![REF_TAG_HELD];
        e.extend_from_slice(&7u128.to_le_bytes());
        assert!(expand(&store, &e, &[]).is_err());
        e[0] = 9;
        assert!(pages_following(&e).is_err());
        e[0] = REF_TAG_PAGE;
        assert!(expand(&store, &e, &[]).is_err());
    }
}

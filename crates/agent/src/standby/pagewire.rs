//! How a standby checkpoint's page files travel: each page as its keyed hash, followed
//! by the page itself unless the standby host holds a page of that hash already (in the
//! checkpoint before). Entries are `tag (1) | hash (16, LE) | page (4096, tag 1 only)`,
//! packed into data frames.

use std::collections::HashSet;

use ferry_pages::precopy::hash::PageHasher;

/// A memory page.
pub const PAGE: usize = 4096;
const TAG_REF: u8 = 0;
const TAG_PAGE: u8 = 1;
const HEAD: usize = 17;

/// Pages per data frame.
pub const PAGES_PER_FRAME: usize = 128;

/// The source's side: what the standby host holds, and the hashes of the checkpoint
/// being sent (which it holds once it is stored).
#[derive(Debug)]
pub struct Encoder {
    hasher: PageHasher,
    held: HashSet<u128>,
    sent: HashSet<u128>,
}

/// What one file's pages came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pages: u64,
    pub held: u64,
}

impl Encoder {
    /// Nothing held yet, with a fresh key.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            hasher: PageHasher::random()?,
            held: HashSet::new(),
            sent: HashSet::new(),
        })
    }

    #[cfg(test)]
    fn with(hasher: PageHasher) -> Self {
        Self {
            hasher,
            held: HashSet::new(),
            sent: HashSet::new(),
        }
    }

    /// Appends the entries of `pages` (whole pages) to `out`.
    pub fn encode(&mut self, pages: &[u8], out: &mut Vec<u8>) -> Counts {
        let mut c = Counts::default();
        for page in pages.chunks(PAGE) {
            let h = self.hasher.hash(page);
            c.pages += 1;
            if self.held.contains(&h) {
                out.push(TAG_REF);
                out.extend_from_slice(&h.to_le_bytes());
                c.held += 1;
            } else {
                out.push(TAG_PAGE);
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(page);
                // Later copies in this checkpoint can refer to it only once it is
                // stored, so within one checkpoint every page travels whole.
            }
            self.sent.insert(h);
        }
        c
    }

    /// The checkpoint just sent is stored: its pages are what the host holds now.
    pub fn stored(&mut self) {
        self.held = std::mem::take(&mut self.sent);
    }

    /// The checkpoint was not stored, or the host holds another one: reference nothing.
    pub fn forget(&mut self) {
        self.held.clear();
        self.sent.clear();
    }

    /// Starts a checkpoint: nothing of it sent yet.
    pub fn begin(&mut self) {
        self.sent.clear();
    }
}

/// Decodes one data frame, calling `page(hash, Some(page))` for pages that travelled and
/// `page(hash, None)` for references; the number of entries.
pub fn decode(
    frame: &[u8],
    mut page: impl FnMut(u128, Option<&[u8]>) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut rest = frame;
    let mut n = 0;
    while !rest.is_empty() {
        if rest.len() < HEAD {
            return Err(bad("a page entry is cut short"));
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(&rest[1..HEAD]);
        let hash = u128::from_le_bytes(h);
        match rest[0] {
            TAG_REF => {
                page(hash, None)?;
                rest = &rest[HEAD..];
            }
            TAG_PAGE if rest.len() >= HEAD + PAGE => {
                page(hash, Some(&rest[HEAD..HEAD + PAGE]))?;
                rest = &rest[HEAD + PAGE..];
            }
            TAG_PAGE => return Err(bad("a page is cut short")),
            _ => return Err(bad("a page entry has an unknown tag")),
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(fill: &[u8]) -> Vec<u8> {
        fill.iter().flat_map(|&b| vec![b; PAGE]).collect()
    }

    #[test]
    fn held_pages_travel_as_references_once_stored() {
        let mut e = Encoder::with(PageHasher::random().unwrap());
        let first = pages(&[1, 2, 3]);
        let mut out = Vec::new();
        e.begin();
        assert_eq!(e.encode(&first, &mut out), Counts { pages: 3, held: 0 });
        assert_eq!(out.len(), 3 * (HEAD + PAGE));
        e.stored();

        let second = pages(&[1, 9, 3]);
        let mut out = Vec::new();
        e.begin();
        assert_eq!(e.encode(&second, &mut out), Counts { pages: 3, held: 2 });
        assert_eq!(out.len(), 3 * HEAD + PAGE);
        let mut got = Vec::new();
        let n = decode(&out, |h, p| {
            got.push((h, p.map(|p| p[0])));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            [None, Some(9), None]
        );

        // Not stored: the next checkpoint references nothing.
        e.forget();
        let mut out = Vec::new();
        e.begin();
        assert_eq!(e.encode(&second, &mut out).held, 0);
    }

    #[test]
    fn cut_or_unknown_entries_are_refused() {
        let mut e = Encoder::new().unwrap();
        let mut out = Vec::new();
        e.encode(&pages(&[7]), &mut out);
        assert!(decode(&out[..out.len() - 1], |_, _| Ok(())).is_err());
        assert!(decode(&out[..5], |_, _| Ok(())).is_err());
        out[0] = 9;
        assert!(decode(&out, |_, _| Ok(())).is_err());
    }
}

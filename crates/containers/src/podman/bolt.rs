//! A reader of bbolt files, the key-value store Podman keeps its containers in
//! (`libpod/bolt_state.db`): read-only, from a copy of the file in memory, so that it
//! never takes Podman's lock nor sees a page Podman is writing.
//!
//! The format: pages of `page_size` bytes; two meta pages (0 and 1), the valid one with
//! the higher transaction id names the root bucket's page; branch pages point to
//! children by key; leaf pages hold key/value pairs, or nested buckets (a 16-byte
//! header naming the bucket's root page, or, when that is 0, an inline page right
//! after the header).

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BoltError {
    #[error("{0}")]
    Io(String),
    #[error("not a bbolt file, or a damaged one ({0})")]
    Format(&'static str),
}

const MAGIC: u32 = 0xED0C_DAED;
const PAGE_HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
const ELEMENT: usize = 16;

/// A bbolt file, read whole.
#[derive(Debug)]
pub struct Bolt {
    data: Vec<u8>,
    page_size: usize,
    root: u64,
}

/// Where a bucket's entries are: a page of the file, or inline in its parent's value.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

/// One bucket of the file.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    db: &'a Bolt,
    node: Node<'a>,
}

/// A value, or a nested bucket.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Value(&'a [u8]),
    Bucket(Bucket<'a>),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BoltError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(BoltError::Format("short page"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BoltError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BoltError::Format("short page"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, BoltError> {
    b.get(at..at + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .ok_or(BoltError::Format("short page"))
}

fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A meta page's (transaction id, root page), if it is valid.
fn meta(page: &[u8]) -> Option<(u64, u64, usize)> {
    let m = page.get(PAGE_HEADER..PAGE_HEADER + 64)?;
    if u32_at(m, 0).ok()? != MAGIC || u32_at(m, 4).ok()? != 2 {
        return None;
    }
    if fnv64a(&m[..56]) != u64_at(m, 56).ok()? {
        return None;
    }
    let page_size = u32_at(m, 8).ok()? as usize;
    Some((u64_at(m, 48).ok()?, u64_at(m, 16).ok()?, page_size))
}

impl Bolt {
    /// Reads the file at `path`.
    pub fn open(path: &Path) -> Result<Self, BoltError> {
        let data =
            std::fs::read(path).map_err(|e| BoltError::Io(format!("{}: {e}", path.display())))?;
        Self::from_bytes(data)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<Self, BoltError> {
        let first = meta(&data);
        let second = data.get(first.map_or(4096, |m| m.2)..).and_then(meta);
        let (_, root, page_size) = match (first, second) {
            (Some(f), Some(s)) => {
                if s.0 > f.0 {
                    s
                } else {
                    f
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(BoltError::Format("no valid meta page")),
        };
        if !(512..=1 << 16).contains(&page_size) {
            return Err(BoltError::Format("page size"));
        }
        Ok(Self {
            data,
            page_size,
            root,
        })
    }

    /// The top-level bucket.
    pub fn root(&self) -> Bucket<'_> {
        Bucket {
            db: self,
            node: Node::Page(self.root),
        }
    }

    fn page(&self, id: u64) -> Result<&[u8], BoltError> {
        let start = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_mul(self.page_size))
            .ok_or(BoltError::Format("page number"))?;
        let head = self
            .data
            .get(start..start + PAGE_HEADER)
            .ok_or(BoltError::Format("page beyond the end"))?;
        let overflow = u32_at(head, 12)? as usize;
        let end = start + (overflow + 1) * self.page_size;
        self.data
            .get(start..end.min(self.data.len()))
            .ok_or(BoltError::Format("page beyond the end"))
    }
}

impl<'a> Bucket<'a> {
    /// Every entry of the bucket, in key order.
    pub fn entries(&self) -> Result<Vec<(&'a [u8], Entry<'a>)>, BoltError> {
        let mut out = Vec::new();
        let page = match self.node {
            Node::Page(id) => self.db.page(id)?,
            Node::Inline(p) => p,
        };
        self.walk(page, &mut out, 0)?;
        Ok(out)
    }

    fn walk(
        &self,
        page: &'a [u8],
        out: &mut Vec<(&'a [u8], Entry<'a>)>,
        depth: usize,
    ) -> Result<(), BoltError> {
        if depth > 32 {
            return Err(BoltError::Format("tree too deep"));
        }
        let flags = u16_at(page, 8)?;
        let count = u16_at(page, 10)? as usize;
        for i in 0..count {
            let at = PAGE_HEADER + i * ELEMENT;
            if flags & BRANCH != 0 {
                let child = u64_at(page, at + 8)?;
                self.walk(self.db.page(child)?, out, depth + 1)?;
            } else if flags & LEAF != 0 {
                let (kind, pos) = (u32_at(page, at)?, u32_at(page, at + 4)? as usize);
                let (ksize, vsize) = (
                    u32_at(page, at + 8)? as usize,
                    u32_at(page, at + 12)? as usize,
                );
                let k = at + pos;
                let key = page
                    .get(k..k + ksize)
                    .ok_or(BoltError::Format("key beyond its page"))?;
                let value = page
                    .get(k + ksize..k + ksize + vsize)
                    .ok_or(BoltError::Format("value beyond its page"))?;
                let entry = if kind & BUCKET_LEAF != 0 {
                    Entry::Bucket(self.nested(value)?)
                } else {
                    Entry::Value(value)
                };
                out.push((key, entry));
            } else {
                return Err(BoltError::Format("neither a branch nor a leaf page"));
            }
        }
        Ok(())
    }

    fn nested(&self, value: &'a [u8]) -> Result<Bucket<'a>, BoltError> {
        let root = u64_at(value, 0)?;
        let node = match root {
            0 => Node::Inline(value.get(16..).ok_or(BoltError::Format("inline bucket"))?),
            id => Node::Page(id),
        };
        Ok(Bucket { db: self.db, node })
    }

    /// The entry at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry<'a>>, BoltError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e))
    }

    /// The nested bucket at `key`.
    pub fn bucket(&self, key: &[u8]) -> Result<Option<Bucket<'a>>, BoltError> {
        Ok(match self.get(key)? {
            Some(Entry::Bucket(b)) => Some(b),
            _ => None,
        })
    }

    /// The value at `key`.
    pub fn value(&self, key: &[u8]) -> Result<Option<&'a [u8]>, BoltError> {
        Ok(match self.get(key)? {
            Some(Entry::Value(v)) => Some(v),
            _ => None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const PS: usize = 4096;

    /// A leaf page (or an inline one, without the page's padding) of these entries.
    pub(crate) fn leaf(id: u64, entries: &[(&[u8], Vec<u8>, bool)], pad: bool) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_HEADER + entries.len() * ELEMENT];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&LEAF.to_le_bytes());
        p[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        for (i, (k, v, bucket)) in entries.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = p.len() - at;
            let flags: u32 = if *bucket { BUCKET_LEAF } else { 0 };
            p[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            p[at + 4..at + 8].copy_from_slice(&(pos as u32).to_le_bytes());
            p[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            p[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(k);
            p.extend_from_slice(v);
        }
        if pad {
            p.resize(PS, 0);
        }
        p
    }

    /// The value of an inline bucket holding these entries.
    pub(crate) fn inline(entries: &[(&[u8], Vec<u8>, bool)]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend(leaf(0, entries, false));
        v
    }

    fn meta_page(id: u64, txid: u64, root: u64) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&0x04u16.to_le_bytes());
        let m = PAGE_HEADER;
        p[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
        p[m + 4..m + 8].copy_from_slice(&2u32.to_le_bytes());
        p[m + 8..m + 12].copy_from_slice(&(PS as u32).to_le_bytes());
        p[m + 16..m + 24].copy_from_slice(&root.to_le_bytes());
        p[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv64a(&p[m..m + 56]);
        p[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// A file whose newest meta page (the second) names page `root_page` as the root;
    /// the first names an empty root.
    pub(crate) fn file(pages: Vec<Vec<u8>>) -> Vec<u8> {
        let mut f = meta_page(0, 1, 2);
        f.extend(meta_page(1, 2, 3));
        f.extend(leaf(2, &[], true));
        for p in pages {
            f.extend(p);
        }
        f
    }

    #[test]
    fn reads_values_and_nested_buckets() {
        let ctr = inline(&[(b"config", b"{\"name\":\"r1\"}".to_vec(), false)]);
        let ctrs = inline(&[(b"abc", ctr, true)]);
        let root = leaf(
            3,
            &[(b"ctr", ctrs, true), (b"x", b"1".to_vec(), false)],
            true,
        );
        let db = Bolt::from_bytes(file(vec![root])).unwrap();
        let ctr = db.root().bucket(b"ctr").unwrap().unwrap();
        let one = ctr.bucket(b"abc").unwrap().unwrap();
        assert_eq!(one.value(b"config").unwrap().unwrap(), b"{\"name\":\"r1\"}");
        assert_eq!(db.root().value(b"x").unwrap().unwrap(), b"1");
        assert!(db.root().get(b"missing").unwrap().is_none());
    }

    #[test]
    fn the_newer_meta_page_wins_and_damage_is_refused() {
        let root = leaf(3, &[(b"k", b"new".to_vec(), false)], true);
        let mut f = file(vec![root]);
        let db = Bolt::from_bytes(f.clone()).unwrap();
        assert_eq!(db.root().value(b"k").unwrap().unwrap(), b"new");
        // A torn second meta page: the first one's (empty) root is read.
        f[PS + PAGE_HEADER + 20] ^= 0xff;
        let db = Bolt::from_bytes(f.clone()).unwrap();
        assert!(db.root().entries().unwrap().is_empty());
        f[PAGE_HEADER] ^= 0xff;
        assert!(Bolt::from_bytes(f).is_err(), "both meta pages damaged");
        assert!(Bolt::from_bytes(vec![0u8; 100]).is_err());
    }

    #[test]
    fn a_page_pointing_outside_the_file_is_an_error_not_a_panic() {
        let mut root = leaf(3, &[(b"k", b"v".to_vec(), false)], true);
        root[PAGE_HEADER + 8..PAGE_HEADER + 12].copy_from_slice(&9999u32.to_le_bytes());
        let db = Bolt::from_bytes(file(vec![root])).unwrap();
        assert!(db.root().entries().is_err());
    }
}

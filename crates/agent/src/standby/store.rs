//! The standby host's side: complete checkpoints of each container under
//! `STATE/standby/NAME/ckpt-SEQ/`, the one being received in `next/`. A checkpoint is
//! complete once its `meta.json` is written and `next/` is renamed; older ones are then
//! removed. `pages.idx` lists the hash of every page of its page files, so that the next
//! checkpoint's references resolve to them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_types::NetSpec;
use serde::{Deserialize, Serialize};

use super::pagewire::PAGE;

const META: &str = "meta.json";
const INDEX: &str = "pages.idx";

/// What a complete checkpoint is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub container: String,
    pub seq: u64,
    pub source: String,
    pub taken_unix_ms: u64,
    pub bytes: u64,
    pub net: NetSpec,
    pub digest: String,
}

/// One container's checkpoints on this host.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn bad(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// A file name a peer may give: plain, no directories.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != INDEX
        && name != META
}

impl Store {
    pub fn open(state_dir: &Path, container: &str) -> Self {
        Self {
            root: state_dir.join("standby").join(container),
        }
    }

    /// The containers with checkpoints under `state_dir`, and their newest one.
    pub fn all(state_dir: &Path) -> Vec<(Meta, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(state_dir.join("standby")) else {
            return Vec::new();
        };
        let mut out: Vec<_> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                Store::open(state_dir, &name).latest()
            })
            .collect();
        out.sort_by(|a, b| a.0.container.cmp(&b.0.container));
        out
    }

    /// The newest complete checkpoint, and its directory.
    pub fn latest(&self) -> Option<(Meta, PathBuf)> {
        let rd = std::fs::read_dir(&self.root).ok()?;
        rd.filter_map(Result::ok)
            .filter_map(|e| {
                let seq: u64 = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("ckpt-")?
                    .parse()
                    .ok()?;
                let meta: Meta =
                    serde_json::from_slice(&std::fs::read(e.path().join(META)).ok()?).ok()?;
                (meta.seq == seq).then(|| (meta, e.path()))
            })
            .max_by_key(|(m, _)| m.seq)
    }

    /// Starts receiving a checkpoint; `known` is the one the source may reference.
    pub fn begin(&self, known: Option<u64>) -> std::io::Result<Incoming> {
        let next = self.root.join("next");
        let _ = std::fs::remove_dir_all(&next);
        std::fs::create_dir_all(&next)?;
        let prev = match (known, self.latest()) {
            (Some(k), Some((m, dir))) if m.seq == k => Some(Previous::load(dir)?),
            _ => None,
        };
        Ok(Incoming {
            root: self.root.clone(),
            dir: next,
            prev,
            index: Vec::new(),
            bytes: 0,
        })
    }

    /// Removes every checkpoint of the container (it runs here now).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The checkpoint references resolve against.
#[derive(Debug)]
struct Previous {
    dir: PathBuf,
    at: HashMap<u128, (String, u64)>,
    files: HashMap<String, File>,
}

impl Previous {
    fn load(dir: PathBuf) -> std::io::Result<Self> {
        let mut at = HashMap::new();
        for (name, hashes) in read_index(&dir.join(INDEX))? {
            for (i, h) in hashes.into_iter().enumerate() {
                at.entry(h).or_insert((name.clone(), i as u64));
            }
        }
        Ok(Self {
            dir,
            at,
            files: HashMap::new(),
        })
    }

    fn page(&mut self, hash: u128, buf: &mut [u8]) -> std::io::Result<()> {
        let (name, i) = self
            .at
            .get(&hash)
            .cloned()
            .ok_or_else(|| bad("a page reference names no page of the checkpoint before"))?;
        let f = match self.files.entry(name.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(File::open(self.dir.join(&name))?)
            }
        };
        f.read_exact_at(buf, i * PAGE as u64)
    }
}

/// A checkpoint being received.
#[derive(Debug)]
pub struct Incoming {
    root: PathBuf,
    dir: PathBuf,
    prev: Option<Previous>,
    index: Vec<(String, Vec<u128>)>,
    bytes: u64,
}

/// A page file being written.
#[derive(Debug)]
pub struct PageFile {
    out: BufWriter<File>,
    pub expected: u64,
    pub written: u64,
}

impl Incoming {
    /// The directory files land in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A plain image file, written whole.
    pub fn create(&mut self, name: &str) -> std::io::Result<BufWriter<File>> {
        if !plain_name(name) {
            return Err(bad(format!(
                "'{}' is not an image file name",
                name.escape_debug()
            )));
        }
        Ok(BufWriter::with_capacity(
            1 << 20,
            File::create(self.dir.join(name))?,
        ))
    }

    pub fn count(&mut self, n: u64) {
        self.bytes += n;
    }

    /// A page file of `pages` pages.
    pub fn page_file(&mut self, name: &str, pages: u64) -> std::io::Result<PageFile> {
        let out = self.create(name)?;
        self.index.push((name.to_string(), Vec::new()));
        Ok(PageFile {
            out,
            expected: pages,
            written: 0,
        })
    }

    /// One page of the current page file: the page itself, or a reference to the
    /// checkpoint before.
    pub fn page(
        &mut self,
        f: &mut PageFile,
        hash: u128,
        page: Option<&[u8]>,
    ) -> std::io::Result<()> {
        if f.written == f.expected {
            return Err(bad("a page file got more pages than announced"));
        }
        match page {
            Some(p) => f.out.write_all(p)?,
            None => {
                let mut buf = [0u8; PAGE];
                self.prev
                    .as_mut()
                    .ok_or_else(|| bad("a page reference, and no checkpoint before"))?
                    .page(hash, &mut buf)?;
                f.out.write_all(&buf)?;
            }
        }
        if let Some((_, hashes)) = self.index.last_mut() {
            hashes.push(hash);
        }
        f.written += 1;
        self.bytes += PAGE as u64;
        Ok(())
    }

    /// Ends a page file, checking it got every page announced.
    pub fn end_pages(&mut self, f: PageFile) -> std::io::Result<()> {
        if f.written != f.expected {
            return Err(bad(format!(
                "a page file got {} of its {} pages",
                f.written, f.expected
            )));
        }
        let file = f.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()
    }

    /// Makes it the newest complete checkpoint and removes the older ones; its bytes.
    pub fn finish(self, mut meta: Meta) -> std::io::Result<u64> {
        write_index(&self.dir.join(INDEX), &self.index)?;
        meta.bytes = self.bytes;
        let m = self.dir.join(META);
        std::fs::write(
            &m,
            serde_json::to_vec_pretty(&meta).map_err(|e| bad(e.to_string()))?,
        )?;
        File::open(&m)?.sync_all()?;
        let done = self.root.join(format!("ckpt-{}", meta.seq));
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&self.dir, &done)?;
        File::open(&self.root)?.sync_all()?;
        drop(self.prev);
        for e in std::fs::read_dir(&self.root)?.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("ckpt-") && e.path() != done {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(meta.bytes)
    }
}

fn write_index(path: &Path, index: &[(String, Vec<u128>)]) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    for (name, hashes) in index {
        w.write_all(&(name.len() as u16).to_le_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&(hashes.len() as u64).to_le_bytes())?;
        for h in hashes {
            w.write_all(&h.to_le_bytes())?;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn read_index(path: &Path) -> std::io::Result<Vec<(String, Vec<u128>)>> {
    let mut r = std::io::BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    loop {
        let mut l = [0u8; 2];
        match r.read_exact(&mut l) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) => return Err(e),
        }
        let mut name = vec![0u8; u16::from_le_bytes(l) as usize];
        r.read_exact(&mut name)?;
        let mut n = [0u8; 8];
        r.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        let mut hashes = Vec::with_capacity(n.min(1 << 24) as usize);
        for _ in 0..n {
            let mut h = [0u8; 16];
            r.read_exact(&mut h)?;
            hashes.push(u128::from_le_bytes(h));
        }
        out.push((String::from_utf8_lossy(&name).into_owned(), hashes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> Meta {
        Meta {
            container: "redis".into(),
            seq,
            source: "a".into(),
            taken_unix_ms: 1000 * seq,
            bytes: 0,
            net: NetSpec {
                address: "10.77.1.10/16".into(),
                mac: "02:00:00:00:00:01".into(),
                gateway: None,
                pod: None,
            },
            digest: "d".into(),
        }
    }

    #[test]
    fn a_checkpoint_refers_to_the_one_before_and_replaces_it() {
        let state = tempfile::tempdir().unwrap();
        let store = Store::open(state.path(), "redis");
        assert!(store.latest().is_none());

        let mut first = store.begin(None).unwrap();
        let mut f = first.page_file("pages-1.img", 2).unwrap();
        first.page(&mut f, 11, Some(&[1u8; PAGE])).unwrap();
        first.page(&mut f, 22, Some(&[2u8; PAGE])).unwrap();
        first.end_pages(f).unwrap();
        let mut core = first.create("core-1.img").unwrap();
        core.write_all(b"core").unwrap();
        drop(core);
        first.finish(meta(1)).unwrap();
        assert_eq!(store.latest().unwrap().0.seq, 1);

        // A reference to an unknown page is refused; one to a known page resolves.
        let mut second = store.begin(Some(1)).unwrap();
        let mut f = second.page_file("pages-1.img", 3).unwrap();
        assert!(second.page(&mut f, 99, None).is_err());
        second.page(&mut f, 22, None).unwrap();
        second.page(&mut f, 33, Some(&[3u8; PAGE])).unwrap();
        second.page(&mut f, 11, None).unwrap();
        second.end_pages(f).unwrap();
        let bytes = second.finish(meta(2)).unwrap();
        assert_eq!(bytes, 3 * PAGE as u64);
        let (m, dir) = store.latest().unwrap();
        assert_eq!(m.seq, 2);
        let img = std::fs::read(dir.join("pages-1.img")).unwrap();
        assert_eq!(img, [[2u8; PAGE], [3u8; PAGE], [1u8; PAGE]].concat());
        assert!(!state.path().join("standby/redis/ckpt-1").exists());
        assert_eq!(Store::all(state.path()).len(), 1);

        // Short files, extra pages and names with directories are refused.
        let mut third = store.begin(Some(2)).unwrap();
        let mut f = third.page_file("pages-1.img", 1).unwrap();
        third.page(&mut f, 33, None).unwrap();
        assert!(third.page(&mut f, 33, None).is_err());
        let f = third.page_file("pages-2.img", 2).unwrap();
        assert!(third.end_pages(f).is_err());
        assert!(third.create("../x").is_err());
        assert!(third.create(META).is_err());
        // A known checkpoint the host no longer holds: nothing resolves.
        let mut fourth = store.begin(Some(1)).unwrap();
        let mut f = fourth.page_file("pages-1.img", 1).unwrap();
        assert!(fourth.page(&mut f, 22, None).is_err());
    }
}

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
            (Some(k), Some((m, dir))) if m.seq == k => Some(dir),
            _ => None,
        };
        Incoming::new(&self.root, next, prev)
    }

    /// Removes every checkpoint of the container (it runs here now).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The pages of a container's checkpoints, each stored once: `pool-GEN.pages`, appended
/// to by each checkpoint. A checkpoint's `pages.idx` names its pool's generation and,
/// for every page of its page files, the page's hash and place in the pool. When the
/// pool holds more than twice what the newest checkpoint uses, that checkpoint moves to
/// a compacted pool of the next generation before it becomes the newest; a pool no
/// complete checkpoint names is removed.
#[derive(Debug)]
struct Pool {
    gen: u64,
    file: File,
    pages: u64,
}

fn pool_path(root: &Path, gen: u64) -> PathBuf {
    root.join(format!("pool-{gen}.pages"))
}

impl Pool {
    fn open(root: &Path, gen: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(pool_path(root, gen))?;
        let pages = file.metadata()?.len() / PAGE as u64;
        Ok(Self { gen, file, pages })
    }

    fn append(&mut self, page: &[u8]) -> std::io::Result<u64> {
        let at = self.pages;
        self.file.write_all_at(page, at * PAGE as u64)?;
        self.pages += 1;
        Ok(at)
    }
}

/// The generations of pools under `root`.
fn pool_gens(root: &Path) -> Vec<u64> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("pool-")?
                .strip_suffix(".pages")?
                .parse()
                .ok()
        })
        .collect()
}

/// A checkpoint being received.
#[derive(Debug)]
pub struct Incoming {
    root: PathBuf,
    dir: PathBuf,
    /// Where each page already in the pool is: the checkpoint before's, and this one's.
    at: HashMap<u128, u64>,
    /// Pages the checkpoint before has (references may name only those).
    known: usize,
    pool: Pool,
    index: Vec<(String, Vec<(u128, u64)>)>,
    bytes: u64,
    /// Bytes written to the pool by this checkpoint.
    pub written: u64,
}

/// A page file being received.
#[derive(Debug)]
pub struct PageFile {
    pub expected: u64,
    pub written: u64,
}

impl Incoming {
    fn new(root: &Path, dir: PathBuf, prev: Option<PathBuf>) -> std::io::Result<Self> {
        let (at, gen) = match prev {
            Some(p) => {
                let (gen, files) = read_index(&p.join(INDEX))?;
                let at = files
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect::<HashMap<_, _>>();
                (at, gen)
            }
            None => (
                HashMap::new(),
                pool_gens(root).into_iter().max().map_or(1, |g| g + 1),
            ),
        };
        Ok(Self {
            root: root.to_path_buf(),
            dir,
            known: at.len(),
            at,
            pool: Pool::open(root, gen)?,
            index: Vec::new(),
            bytes: 0,
            written: 0,
        })
    }

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
        if !plain_name(name) {
            return Err(bad(format!(
                "'{}' is not an image file name",
                name.escape_debug()
            )));
        }
        self.index.push((name.to_string(), Vec::new()));
        Ok(PageFile {
            expected: pages,
            written: 0,
        })
    }

    /// One page of the current page file: the page itself, or a reference to one the
    /// checkpoint before holds. A page the pool holds already is not written again.
    pub fn page(
        &mut self,
        f: &mut PageFile,
        hash: u128,
        page: Option<&[u8]>,
    ) -> std::io::Result<()> {
        if f.written == f.expected {
            return Err(bad("a page file got more pages than announced"));
        }
        let at = match (self.at.get(&hash), page) {
            (Some(&at), _) => at,
            (None, Some(p)) => {
                let at = self.pool.append(p)?;
                self.written += PAGE as u64;
                self.at.insert(hash, at);
                at
            }
            (None, None) if self.known == 0 => {
                return Err(bad("a page reference, and no checkpoint before"))
            }
            (None, None) => {
                return Err(bad(
                    "a page reference names no page of the checkpoint before",
                ))
            }
        };
        if let Some((_, pages)) = self.index.last_mut() {
            pages.push((hash, at));
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
        Ok(())
    }

    /// Makes it the newest complete checkpoint and removes the older ones (and pools
    /// no checkpoint names); its bytes.
    pub fn finish(mut self, mut meta: Meta) -> std::io::Result<u64> {
        let live: std::collections::HashSet<u64> = self
            .index
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .collect();
        if self.pool.pages > 2 * live.len() as u64 + 1024 {
            self.compact()?;
        }
        self.pool.file.sync_data()?;
        write_index(&self.dir.join(INDEX), self.pool.gen, &self.index)?;
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
        for e in std::fs::read_dir(&self.root)?.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("ckpt-") && e.path() != done {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        for g in pool_gens(&self.root) {
            if g != self.pool.gen {
                let _ = std::fs::remove_file(pool_path(&self.root, g));
            }
        }
        Ok(meta.bytes)
    }

    /// Moves this checkpoint's pages into a pool of the next generation, in order.
    fn compact(&mut self) -> std::io::Result<()> {
        let gen = pool_gens(&self.root)
            .into_iter()
            .max()
            .unwrap_or(self.pool.gen)
            + 1;
        let _ = std::fs::remove_file(pool_path(&self.root, gen));
        let mut next = Pool::open(&self.root, gen)?;
        let mut moved: HashMap<u64, u64> = HashMap::new();
        let mut buf = [0u8; PAGE];
        for (_, pages) in &mut self.index {
            for (_, at) in pages.iter_mut() {
                let to = match moved.get(at) {
                    Some(&to) => to,
                    None => {
                        self.pool.file.read_exact_at(&mut buf, *at * PAGE as u64)?;
                        let to = next.append(&buf)?;
                        moved.insert(*at, to);
                        to
                    }
                };
                *at = to;
            }
        }
        self.pool = next;
        Ok(())
    }
}

/// Writes the checkpoint at `ckpt` as CRIU's image files into `out`: its files, and its
/// page files from the pool.
pub fn materialize(ckpt: &Path, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    for e in std::fs::read_dir(ckpt)?.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if e.metadata()?.is_file() && n != INDEX {
            std::fs::copy(e.path(), out.join(&n))?;
        }
    }
    let root = ckpt
        .parent()
        .ok_or_else(|| bad("a checkpoint outside its store"))?;
    let (gen, files) = read_index(&ckpt.join(INDEX))?;
    let pool = File::open(pool_path(root, gen))?;
    let mut buf = vec![0u8; PAGE];
    for (name, pages) in files {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(out.join(&name))?);
        for (_, at) in pages {
            pool.read_exact_at(&mut buf, at * PAGE as u64)?;
            w.write_all(&buf)?;
        }
        w.flush()?;
    }
    Ok(())
}

fn write_index(path: &Path, gen: u64, index: &[(String, Vec<(u128, u64)>)]) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(&gen.to_le_bytes())?;
    for (name, pages) in index {
        w.write_all(&(name.len() as u16).to_le_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&(pages.len() as u64).to_le_bytes())?;
        for (h, at) in pages {
            w.write_all(&h.to_le_bytes())?;
            w.write_all(&at.to_le_bytes())?;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

type IndexFiles = Vec<(String, Vec<(u128, u64)>)>;

fn read_index(path: &Path) -> std::io::Result<(u64, IndexFiles)> {
    let mut r = std::io::BufReader::new(File::open(path)?);
    let mut g = [0u8; 8];
    r.read_exact(&mut g)?;
    let mut out = Vec::new();
    loop {
        let mut l = [0u8; 2];
        match r.read_exact(&mut l) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok((u64::from_le_bytes(g), out))
            }
            Err(e) => return Err(e),
        }
        let mut name = vec![0u8; u16::from_le_bytes(l) as usize];
        r.read_exact(&mut name)?;
        let mut n = [0u8; 8];
        r.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        let mut pages = Vec::with_capacity(n.min(1 << 24) as usize);
        for _ in 0..n {
            let mut h = [0u8; 16];
            let mut at = [0u8; 8];
            r.read_exact(&mut h)?;
            r.read_exact(&mut at)?;
            pages.push((u128::from_le_bytes(h), u64::from_le_bytes(at)));
        }
        out.push((String::from_utf8_lossy(&name).into_owned(), pages));
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

    fn pages_of(dir: &Path) -> Vec<u8> {
        let out = dir.parent().unwrap().parent().unwrap().join("out");
        let _ = std::fs::remove_dir_all(&out);
        materialize(dir, &out).unwrap();
        std::fs::read(out.join("pages-1.img")).unwrap()
    }

    #[test]
    fn a_checkpoint_refers_to_the_one_before_and_writes_only_new_pages() {
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
        assert_eq!(first.written, 2 * PAGE as u64);
        first.finish(meta(1)).unwrap();
        assert_eq!(store.latest().unwrap().0.seq, 1);

        // A reference to an unknown page is refused; one to a known page resolves, and
        // only the new page is written.
        let mut second = store.begin(Some(1)).unwrap();
        let mut f = second.page_file("pages-1.img", 3).unwrap();
        assert!(second.page(&mut f, 99, None).is_err());
        second.page(&mut f, 22, None).unwrap();
        second.page(&mut f, 33, Some(&[3u8; PAGE])).unwrap();
        second.page(&mut f, 11, None).unwrap();
        second.end_pages(f).unwrap();
        assert_eq!(second.written, PAGE as u64);
        let mut core = second.create("core-1.img").unwrap();
        core.write_all(b"core").unwrap();
        drop(core);
        second.count(4);
        let bytes = second.finish(meta(2)).unwrap();
        assert_eq!(bytes, 3 * PAGE as u64 + 4);
        let (m, dir) = store.latest().unwrap();
        assert_eq!(m.seq, 2);
        assert_eq!(
            pages_of(&dir),
            [[2u8; PAGE], [3u8; PAGE], [1u8; PAGE]].concat()
        );
        let out = state.path().join("standby/out");
        assert_eq!(std::fs::read(out.join("core-1.img")).unwrap(), b"core");
        assert!(!out.join(INDEX).exists());
        assert!(!state.path().join("standby/redis/ckpt-1").exists());

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

    #[test]
    fn a_pool_mostly_of_dead_pages_is_compacted_and_the_old_one_removed() {
        let state = tempfile::tempdir().unwrap();
        let store = Store::open(state.path(), "redis");
        let root = state.path().join("standby/redis");
        for seq in 1..=3u64 {
            let mut inc = store.begin((seq > 1).then_some(seq - 1)).unwrap();
            let mut f = inc.page_file("pages-1.img", 1200).unwrap();
            for i in 0..1200u64 {
                // Every page but the first changes every time.
                let (h, v) = match i {
                    0 => (1, 7u8),
                    _ => (u128::from(seq * 10_000 + i), (seq * 31 + i) as u8),
                };
                inc.page(&mut f, h, Some(&[v; PAGE])).unwrap();
            }
            inc.end_pages(f).unwrap();
            inc.finish(meta(seq)).unwrap();
        }
        let gens = pool_gens(&root);
        assert_eq!(gens.len(), 1, "{gens:?}");
        let pool = std::fs::metadata(pool_path(&root, gens[0])).unwrap().len();
        assert!(pool <= (2 * 1200 + 1024) * PAGE as u64, "{pool}");
        let (_, dir) = store.latest().unwrap();
        let img = pages_of(&dir);
        assert_eq!(img.len(), 1200 * PAGE);
        assert_eq!(img[0], 7);
        assert_eq!(img[PAGE * 5], (3 * 31 + 5u64) as u8);
    }
}

//! What changed in a bundle's files while the container ran on during its move.
//!
//! The bundle travels before the freeze, while the container still writes its files.
//! Whatever it wrote between that copy and the freeze would be missing at the
//! destination, while the restored process believes it is on disk. So the source takes
//! a [`Snapshot`] of every entry before it sends it, and after the freeze writes what
//! differs (new, changed, removed) into a delta file that travels with the images; the
//! destination applies it before the restore. `config.json` is the destination's own
//! (it rewrites namespaces and cgroups) and never part of a delta.
//!
//! The delta file: `FERRY-DELTA 1\n`, then records: `F`, a `u32` length, a
//! [`FileEntry`] as JSON, and for a file its `size` bytes; `R`, a `u32` length and a
//! path that is gone; `E` at the end.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferry_types::{FileEntry, FileKind};

use crate::error::RuntimeError;
use crate::manifest::{safe_relative, Unpacker};

const HEADER: &[u8] = b"FERRY-DELTA 1\n";
/// Largest record header (a JSON entry or a path) a delta may hold.
const MAX_RECORD: u32 = 64 << 10;

/// What `stat` says of one entry: any write, chmod or replacement changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    mode: u32,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// Every entry's stamp, by path.
pub type Snapshot = HashMap<String, Stamp>;

/// How much a delta carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeltaCounts {
    pub changed: u32,
    pub removed: u32,
    pub bytes: u64,
}

impl DeltaCounts {
    pub fn is_empty(&self) -> bool {
        self.changed == 0 && self.removed == 0
    }
}

fn stamp(root: &Path, rel: &str) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(root.join(rel)).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some(Stamp {
        size: m.len(),
        mode: m.mode(),
        ino: m.ino(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}

/// Stamps `entries` under `root`. Take it before their content is read: whatever
/// changes afterwards differs from it.
pub fn snapshot(root: &Path, entries: &[FileEntry]) -> Snapshot {
    entries
        .iter()
        .filter_map(|e| Some((e.path.clone(), stamp(root, &e.path)?)))
        .collect()
}

fn record(out: &mut impl Write, tag: u8, body: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(body)
}

/// Writes into `out` what differs between the entries sent (`sent`, stamped in
/// `before`) and the entries now (`now`, listed after the freeze).
pub fn write_delta(
    root: &Path,
    sent: &[FileEntry],
    before: &Snapshot,
    now: &[FileEntry],
    out: &Path,
) -> Result<DeltaCounts, RuntimeError> {
    let io = |e| RuntimeError::io(out, e);
    let sizes: HashMap<&str, (FileKind, u64)> = sent
        .iter()
        .map(|e| (e.path.as_str(), (e.kind, e.size)))
        .collect();
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    w.write_all(HEADER).map_err(io)?;
    let mut n = DeltaCounts::default();
    for e in now.iter().filter(|e| e.path != "config.json") {
        let same = sizes.get(e.path.as_str()) == Some(&(e.kind, e.size))
            && before
                .get(&e.path)
                .is_some_and(|s| stamp(root, &e.path) == Some(*s));
        if same {
            continue;
        }
        let json = serde_json::to_vec(e).map_err(|x| RuntimeError::io(out, x.into()))?;
        record(&mut w, b'F', &json).map_err(io)?;
        if e.kind == FileKind::File {
            let path = root.join(&e.path);
            let mut f = std::fs::File::open(&path).map_err(|x| RuntimeError::io(&path, x))?;
            let copied = std::io::copy(&mut (&mut f).take(e.size), &mut w).map_err(io)?;
            if copied != e.size {
                return Err(RuntimeError::io(
                    &path,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            n.bytes += e.size;
        }
        n.changed += 1;
    }
    let present: std::collections::HashSet<&str> = now.iter().map(|e| e.path.as_str()).collect();
    // Deepest first, so that a directory is emptied before it goes.
    let mut gone: Vec<&str> = sent
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| !present.contains(p))
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in gone {
        record(&mut w, b'R', p.as_bytes()).map_err(io)?;
        n.removed += 1;
    }
    w.write_all(b"E").map_err(io)?;
    w.flush().map_err(io)?;
    Ok(n)
}

fn read_record(r: &mut impl Read, what: &Path) -> Result<Option<(u8, Vec<u8>)>, RuntimeError> {
    let bad = |d: &str| RuntimeError::UnsafePath(format!("{}: {d}", what.display()));
    let io = |e| RuntimeError::io(what, e);
    let mut tag = [0u8];
    r.read_exact(&mut tag).map_err(io)?;
    if tag[0] == b'E' {
        return Ok(None);
    }
    if tag[0] != b'F' && tag[0] != b'R' {
        return Err(bad("an unknown record"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(io)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_RECORD {
        return Err(bad("a record over the limit"));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(io)?;
    Ok(Some((tag[0], body)))
}

/// Applies the delta file `delta` to the bundle in `dir`, with the same checks as a
/// shipment (no path outside it, none through a symbolic link).
pub fn apply_delta(dir: &Path, delta: &Path) -> Result<DeltaCounts, RuntimeError> {
    let bad = |d: String| RuntimeError::UnsafePath(format!("{}: {d}", delta.display()));
    let f = std::fs::File::open(delta).map_err(|e| RuntimeError::io(delta, e))?;
    let mut r = std::io::BufReader::new(f);
    let mut head = [0u8; HEADER.len()];
    r.read_exact(&mut head)
        .map_err(|e| RuntimeError::io(delta, e))?;
    if head != HEADER {
        return Err(bad("not a bundle delta".into()));
    }
    let unpacker = Unpacker::new(dir)?;
    let mut n = DeltaCounts::default();
    let mut removed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    while let Some((tag, body)) = read_record(&mut r, delta)? {
        if tag == b'R' {
            let p = String::from_utf8(body).map_err(|_| bad("a path that is not UTF-8".into()))?;
            safe_relative(&p)?;
            removed.entry(p.matches('/').count()).or_default().push(p);
            continue;
        }
        let e: FileEntry =
            serde_json::from_slice(&body).map_err(|x| bad(format!("a malformed entry: {x}")))?;
        if e.path == "config.json" {
            return Err(bad("config.json is the destination's own".into()));
        }
        if let Some(mut file) = unpacker.begin(&e)? {
            let mut left = e.size;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let k = (buf.len() as u64).min(left) as usize;
                r.read_exact(&mut buf[..k])
                    .map_err(|x| RuntimeError::io(delta, x))?;
                file.write(&buf[..k])?;
                left -= k as u64;
            }
            file.finish()?;
            n.bytes += e.size;
        }
        n.changed += 1;
    }
    for p in removed.into_values().rev().flatten() {
        let path = unpacker.resolve(&p)?;
        let r = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        r.map_err(|e| RuntimeError::io(&path, e))?;
        n.removed += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{create_host_program_bundle, HostProgramSpec};
    use crate::manifest::list_bundle;

    fn copy_bundle(from: &Path, entries: &[FileEntry], to: &Path) {
        let u = Unpacker::new(to).unwrap();
        for e in entries {
            if let Some(mut f) = u.begin(e).unwrap() {
                f.write(&std::fs::read(from.join(&e.path)).unwrap())
                    .unwrap();
                f.finish().unwrap();
            }
        }
    }

    #[test]
    fn writes_after_the_copy_reach_the_destination_and_nothing_else_travels() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let spec = HostProgramSpec {
            args: vec!["/bin/true".into()],
            ..Default::default()
        };
        let b = create_host_program_bundle(src.path(), &spec).unwrap();
        let data = src.path().join("rootfs/data");
        std::fs::write(data.join("seq"), "1\n2\n").unwrap();
        std::fs::write(data.join("same"), "abc").unwrap();
        std::fs::write(data.join("old"), "x").unwrap();
        std::fs::create_dir(data.join("cache")).unwrap();
        std::fs::write(data.join("cache/c"), "x").unwrap();
        let (sent, _) = list_bundle(&b).unwrap();
        let before = snapshot(src.path(), &sent);
        copy_bundle(src.path(), &sent, dst.path());

        // The container goes on: appends, rewrites in place within the same second,
        // creates, removes.
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("seq"))
            .unwrap()
            .write_all(b"3\n")
            .unwrap();
        std::fs::write(data.join("new"), "fresh").unwrap();
        std::fs::remove_file(data.join("old")).unwrap();
        std::fs::remove_dir_all(data.join("cache")).unwrap();
        let (now, _) = list_bundle(&b).unwrap();
        let out = src.path().join("delta");
        let n = write_delta(src.path(), &sent, &before, &now, &out).unwrap();
        assert_eq!(
            n.changed, 3,
            "seq, new, and the data directory itself: {n:?}"
        );
        assert_eq!(n.removed, 3, "old, cache/c, cache");

        let got = apply_delta(dst.path(), &out).unwrap();
        assert_eq!(got, n);
        let d = dst.path().join("rootfs/data");
        assert_eq!(std::fs::read_to_string(d.join("seq")).unwrap(), "1\n2\n3\n");
        assert_eq!(std::fs::read_to_string(d.join("new")).unwrap(), "fresh");
        assert_eq!(std::fs::read_to_string(d.join("same")).unwrap(), "abc");
        assert!(!d.join("old").exists() && !d.join("cache").exists());

        // Nothing changed since: an empty delta.
        let again = snapshot(src.path(), &now);
        let n = write_delta(src.path(), &now, &again, &now, &out).unwrap();
        assert!(n.is_empty(), "{n:?}");
    }

    #[test]
    fn a_hostile_delta_cannot_escape_the_bundle() {
        let dst = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let evil = dst.path().join("evil");
        for (tag, body) in [
            (
                b'R',
                format!("../{}", outside.path().display()).into_bytes(),
            ),
            (
                b'R',
                outside
                    .path()
                    .join("keep")
                    .display()
                    .to_string()
                    .into_bytes(),
            ),
            (
                b'F',
                br#"{"path":"config.json","kind":"file","mode":420,"size":0}"#.to_vec(),
            ),
            (b'Q', Vec::new()),
        ] {
            let mut f = std::fs::File::create(&evil).unwrap();
            f.write_all(HEADER).unwrap();
            record(&mut f, tag, &body).unwrap();
            f.write_all(b"E").unwrap();
            drop(f);
            assert!(apply_delta(dst.path(), &evil).is_err(), "{}", tag as char);
        }
        assert!(outside.path().join("keep").exists());
        std::fs::write(&evil, b"FERRY-DELTA 1\nF\xff\xff\xff\xff").unwrap();
        assert!(
            apply_delta(dst.path(), &evil).is_err(),
            "an oversized record"
        );
    }
}

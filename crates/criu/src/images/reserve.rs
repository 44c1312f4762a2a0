//! Address space reserved but never committed, restored as such.
//!
//! Databases, JVMs and Go programs reserve large areas with `PROT_NONE` (or read-only)
//! private anonymous mappings: the kernel charges nothing for them against its commit
//! limit, because nothing can be written there. CRIU's restore maps every private area
//! writable to fill it (`prot | PROT_WRITE`), so the same area is charged in full, and
//! under the kernel's default heuristic overcommit a reservation larger than memory and
//! swap fails with `Unable to map ANON_VMA: Cannot allocate memory`.
//!
//! Before a restore, ferry marks those areas `MAP_NORESERVE` in the images. CRIU passes
//! an area's flags to `mmap`, so the restore is charged what the source was charged:
//! nothing. The edit is made on the wire, field by field, so that every other field of
//! the image (known to ferry or not) stays byte for byte as CRIU wrote it.

use super::format::{entries, write_image, ImageError, Magic};

const PROT_WRITE: u64 = 0x2;
const MAP_NORESERVE: u64 = 0x4000;
const VMA_ANON_PRIVATE: u64 = 1 << 9;

/// `MmEntry.vmas`, `VmaEntry.prot`, `.flags` and `.status`.
const MM_VMAS: u64 = 14;
const VMA_PROT: u64 = 5;
const VMA_FLAGS: u64 = 6;
const VMA_STATUS: u64 = 7;
const VMA_START: u64 = 1;
const VMA_END: u64 = 2;

/// What the edit changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unreserved {
    pub areas: u32,
    pub bytes: u64,
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One field of a message: number, wire type, its bytes whole, and its value (a varint's
/// value, or a length-delimited field's payload range).
struct Field {
    number: u64,
    raw: std::ops::Range<usize>,
    value: u64,
    payload: std::ops::Range<usize>,
}

fn fields(b: &[u8]) -> Option<Vec<Field>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let start = at;
        let key = varint(b, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        let (value, payload) = match wire {
            0 => (varint(b, &mut at)?, 0..0),
            1 => {
                at += 8;
                (0, 0..0)
            }
            2 => {
                let len = usize::try_from(varint(b, &mut at)?).ok()?;
                let p = at..at.checked_add(len)?;
                at = p.end;
                (0, p)
            }
            5 => {
                at += 4;
                (0, 0..0)
            }
            _ => return None,
        };
        if at > b.len() {
            return None;
        }
        out.push(Field {
            number,
            raw: start..at,
            value,
            payload,
        });
    }
    Some(out)
}

/// A `VmaEntry` with `MAP_NORESERVE` added when it is a private anonymous area that
/// cannot be written; `None` when it is left as it is.
fn unreserve_vma(b: &[u8]) -> Option<(Vec<u8>, u64)> {
    let fs = fields(b)?;
    let get = |n| fs.iter().find(|f| f.number == n).map(|f| f.value);
    let (prot, flags, status) = (get(VMA_PROT)?, get(VMA_FLAGS)?, get(VMA_STATUS)?);
    if status & VMA_ANON_PRIVATE == 0 || prot & PROT_WRITE != 0 || flags & MAP_NORESERVE != 0 {
        return None;
    }
    let size = get(VMA_END)?.checked_sub(get(VMA_START)?)?;
    let mut out = Vec::with_capacity(b.len() + 2);
    for f in &fs {
        if f.number == VMA_FLAGS {
            put_varint(&mut out, VMA_FLAGS << 3);
            put_varint(&mut out, flags | MAP_NORESERVE);
        } else {
            out.extend_from_slice(&b[f.raw.clone()]);
        }
    }
    Some((out, size))
}

/// Rewrites one `MmEntry`; the count is zero when nothing changed.
fn unreserve_mm(b: &[u8]) -> Option<(Vec<u8>, Unreserved)> {
    let mut done = Unreserved::default();
    let mut out = Vec::with_capacity(b.len() + 64);
    for f in fields(b)? {
        match (f.number == MM_VMAS)
            .then(|| unreserve_vma(&b[f.payload.clone()]))
            .flatten()
        {
            Some((vma, size)) => {
                put_varint(&mut out, (MM_VMAS << 3) | 2);
                put_varint(&mut out, vma.len() as u64);
                out.extend_from_slice(&vma);
                done.areas += 1;
                done.bytes += size;
            }
            None => out.extend_from_slice(&b[f.raw.clone()]),
        }
    }
    Some((out, done))
}

/// An `mm-*.img` with its uncommitted reservations marked `MAP_NORESERVE`; `None` when
/// it has none.
pub fn unreserve_image(
    buf: &[u8],
    what: &str,
) -> Result<Option<(Vec<u8>, Unreserved)>, ImageError> {
    let items = entries(buf, Magic::Mm, what)?;
    let mut total = Unreserved::default();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (e, n) = unreserve_mm(item).ok_or_else(|| ImageError::Invalid {
            what: what.into(),
            detail: "a malformed memory entry".into(),
        })?;
        total.areas += n.areas;
        total.bytes += n.bytes;
        out.push(e);
    }
    Ok((total.areas > 0).then(|| (write_image(Magic::Mm, &out), total)))
}

/// Marks the reservations of every `mm-*.img` in `dir`; returns what it changed.
pub fn unreserve_dir(dir: &std::path::Path) -> Result<Unreserved, ImageError> {
    let io = |p: &std::path::Path, e| ImageError::Io(p.display().to_string(), e);
    let mut total = Unreserved::default();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("mm-") && name.ends_with(".img")) {
            continue;
        }
        let path = e.path();
        let buf = super::read_meta_file(&path)?;
        if let Some((img, n)) = unreserve_image(&buf, name)? {
            let tmp = path.with_extension("img.tmp");
            std::fs::write(&tmp, img).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            total.areas += n.areas;
            total.bytes += n.bytes;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, prot: u64, flags: u64, status: u64) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, x) in [
            (1, start),
            (2, end),
            (3, 0),
            (4, 0),
            (5, prot),
            (6, flags),
            (7, status),
        ] {
            put_varint(&mut v, n << 3);
            put_varint(&mut v, x);
        }
        // fd = -1 (sint64, zigzag) and a field ferry does not know, kept as they are.
        v.extend_from_slice(&[8 << 3, 1]);
        put_varint(&mut v, 99 << 3);
        put_varint(&mut v, 7);
        v
    }

    fn mm(vmas: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![1 << 3, 0x10];
        for v in vmas {
            put_varint(&mut m, (14 << 3) | 2);
            put_varint(&mut m, v.len() as u64);
            m.extend_from_slice(v);
        }
        m.extend_from_slice(&[15 << 3, 1]);
        m
    }

    const PRIVATE: u64 = 0x02 | 0x20; // MAP_PRIVATE | MAP_ANONYMOUS

    #[test]
    fn only_uncommitted_private_reservations_are_marked() {
        let tb = 1u64 << 40;
        let img = write_image(
            Magic::Mm,
            &[mm(&[
                vma(0x1000, 0x1000 + tb, 0, PRIVATE, VMA_ANON_PRIVATE | 1),
                vma(
                    0x2000_0000_0000,
                    0x2000_0010_0000,
                    0x3,
                    PRIVATE,
                    VMA_ANON_PRIVATE | 1,
                ),
                vma(
                    0x3000_0000_0000,
                    0x3000_0010_0000,
                    0,
                    0x01 | 0x20,
                    (1 << 8) | 1,
                ),
            ])],
        );
        let (out, n) = unreserve_image(&img, "mm-1.img").unwrap().unwrap();
        assert_eq!(
            n,
            Unreserved {
                areas: 1,
                bytes: tb
            }
        );
        let items = entries(&out, Magic::Mm, "x").unwrap();
        let f = fields(items[0]).unwrap();
        let vmas: Vec<&Field> = f.iter().filter(|f| f.number == 14).collect();
        assert_eq!(vmas.len(), 3);
        let flags = |v: &Field| {
            let fs = fields(&items[0][v.payload.clone()]).unwrap();
            fs.iter().find(|f| f.number == 6).unwrap().value
        };
        assert_eq!(flags(vmas[0]), PRIVATE | MAP_NORESERVE);
        assert_eq!(
            flags(vmas[1]),
            PRIVATE,
            "writable memory is committed at the source too"
        );
        assert_eq!(flags(vmas[2]), 0x21, "shared memory is not a reservation");
        // Everything else is as it was: the other fields, their order, the unknown one.
        let before = entries(&img, Magic::Mm, "x").unwrap()[0].to_vec();
        assert_eq!(
            out.len(),
            img.len() + 2,
            "one flags varint grew by two bytes"
        );
        assert_eq!(&items[0][..2], &before[..2]);
        assert_eq!(&items[0][items[0].len() - 2..], &before[before.len() - 2..]);
        // A second pass changes nothing.
        assert!(unreserve_image(&out, "mm-1.img").unwrap().is_none());
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let img = write_image(Magic::Mm, &[vec![(14 << 3) | 2, 50, 1]]);
        assert!(unreserve_image(&img, "mm-1.img").is_err());
        let img = write_image(Magic::Mm, &[vec![0xff; 11]]);
        assert!(unreserve_image(&img, "mm-1.img").is_err());
    }
}

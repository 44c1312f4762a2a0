//! A checkpoint moved to a new address: the inet sockets of `files.img` whose local
//! address (the moving container's own sockets) or remote address (a peer's sockets
//! towards it) is the old IPv4 address get the new one, IPv4-mapped IPv6 sockets too.
//! CRIU binds and connects each socket to what its image says when it restores it.

use std::net::Ipv4Addr;
use std::path::Path;

use super::file::Image;
use super::tree::{Field, Message, Value};
use super::{write_atomic, ImagesError};

/// `file_entry.isk`, and `inet_sk_entry`'s address fields.
const ISK: u32 = 4;
const SRC_ADDR: u32 = 11;
const DST_ADDR: u32 = 12;
/// The magic of `files.img`.
const FILES_MAGIC: u32 = 0x5630_3138;

/// Which end of the sockets to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The sockets' own address: the container that moves.
    Local,
    /// The address they are connected to: its peers.
    Remote,
}

/// An address as CRIU keeps it: the four bytes of the address in network order, read as
/// one native (little-endian) word.
fn word(a: Ipv4Addr) -> u64 {
    u64::from(u32::from_le_bytes(a.octets()))
}

/// `::ffff:0:0`'s third word, the mark of an IPv4-mapped IPv6 address.
fn mapped_mark() -> u64 {
    u64::from(u32::from_le_bytes([0, 0, 0xff, 0xff]))
}

/// Replaces `from` by `to` in one address field's words (1 for IPv4, 4 for IPv6); true
/// if it did.
fn swap(words: &mut [u64], from: u64, to: u64) -> bool {
    match words {
        [w] if *w == from => *w = to,
        [0, 0, m, w] if *m == mapped_mark() && *w == from => *w = to,
        _ => return false,
    }
    true
}

/// Rewrites field `number` of an `inet_sk_entry`; true if it changed.
fn rewrite(isk: &mut Message, number: u32, from: u64, to: u64) -> bool {
    let mut packed = None;
    let mut words = Vec::new();
    for (i, f) in isk.fields.iter().enumerate() {
        match &f.value {
            Value::Varint(v) if f.number == number => words.push(*v),
            Value::Packed(vs) if f.number == number => {
                packed = Some(i);
                words.extend(vs);
            }
            _ => {}
        }
    }
    if !swap(&mut words, from, to) {
        return false;
    }
    if let Some(i) = packed {
        isk.fields[i].value = Value::Packed(words);
        return true;
    }
    let mut it = words.into_iter();
    for f in isk.fields.iter_mut().filter(|f| f.number == number) {
        if let (Value::Varint(v), Some(w)) = (&mut f.value, it.next()) {
            *v = w;
        }
    }
    true
}

/// The socket of a file entry, decoded (a nested message kept as bytes is decoded now).
fn socket_of(entry: &mut Message) -> Option<&mut Message> {
    let f: &mut Field = entry.fields.iter_mut().find(|f| f.number == ISK)?;
    if let Value::Bytes(b) = &f.value {
        let m = Message::decode(b, None, super::schema::Schema::criu()).ok()?;
        f.value = Value::Message(m);
    }
    match &mut f.value {
        Value::Message(m) => Some(m),
        _ => None,
    }
}

/// Gives the sockets of the checkpoint in `dir` whose `side` address is `from` the
/// address `to`; returns how many changed. `files.img` is replaced atomically; a
/// checkpoint without one (no files) is left alone.
pub fn readdress(
    dir: &Path,
    from: Ipv4Addr,
    to: Ipv4Addr,
    side: Side,
) -> Result<usize, ImagesError> {
    let path = dir.join("files.img");
    if !path.exists() {
        return Ok(0);
    }
    let not_files =
        || ImagesError::BadName(format!("{} is not CRIU's files image", path.display()));
    let Image::Proto(mut img) = Image::read(&path)? else {
        return Err(not_files());
    };
    if img.magic != FILES_MAGIC {
        return Err(not_files());
    }
    let number = match side {
        Side::Local => SRC_ADDR,
        Side::Remote => DST_ADDR,
    };
    let mut changed = 0;
    for e in &mut img.entries {
        if let Some(isk) = socket_of(&mut e.message) {
            if rewrite(isk, number, word(from), word(to)) {
                changed += 1;
            }
        }
    }
    if changed > 0 {
        write_atomic(&path, &Image::Proto(img).encode())?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::format::IMG_COMMON_MAGIC;
    use crate::images::wire::file::{Entry, ProtoImage};

    fn v(number: u32, x: u64) -> Field {
        Field {
            number,
            value: Value::Varint(x),
        }
    }

    /// A file entry holding an inet socket `src -> dst` (one word each, or four).
    fn socket(id: u64, src: &[u64], dst: &[u64]) -> Entry {
        let mut isk = Message {
            fields: vec![v(1, id), v(3, 2)],
        };
        isk.fields.extend(src.iter().map(|w| v(SRC_ADDR, *w)));
        isk.fields.extend(dst.iter().map(|w| v(DST_ADDR, *w)));
        isk.fields.push(v(13, 7));
        Entry {
            message: Message {
                fields: vec![
                    v(1, 2),
                    v(2, id),
                    Field {
                        number: ISK,
                        value: Value::Bytes(isk.encode()),
                    },
                ],
            },
            payload: Vec::new(),
        }
    }

    fn files(dir: &Path, entries: Vec<Entry>) {
        let img = Image::Proto(ProtoImage {
            head: Some(IMG_COMMON_MAGIC),
            magic: FILES_MAGIC,
            entries,
            tail: Vec::new(),
        });
        std::fs::write(dir.join("files.img"), img.encode()).unwrap();
    }

    fn addrs(dir: &Path) -> Vec<(Vec<u64>, Vec<u64>)> {
        let Image::Proto(mut img) = Image::read(&dir.join("files.img")).unwrap() else {
            panic!("not proto")
        };
        img.entries
            .iter_mut()
            .filter_map(|e| socket_of(&mut e.message).cloned())
            .map(|isk| {
                let get = |n: u32| {
                    isk.fields
                        .iter()
                        .filter(|f| f.number == n)
                        .filter_map(|f| match f.value {
                            Value::Varint(x) => Some(x),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                };
                (get(SRC_ADDR), get(DST_ADDR))
            })
            .collect()
    }

    #[test]
    fn own_sockets_and_peer_sockets_take_the_new_address() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, other): (Ipv4Addr, Ipv4Addr, Ipv4Addr) = (
            "10.77.1.10".parse().unwrap(),
            "10.77.1.99".parse().unwrap(),
            "10.77.1.20".parse().unwrap(),
        );
        let m = mapped_mark();
        files(
            dir.path(),
            vec![
                socket(1, &[word(old)], &[word(other)]),
                socket(2, &[0], &[0]),
                socket(3, &[0, 0, m, word(old)], &[0, 0, m, word(other)]),
                socket(4, &[word(other)], &[word(old)]),
            ],
        );
        let n = readdress(dir.path(), old, new, Side::Local).unwrap();
        assert_eq!(n, 2, "the connection and the mapped one; not the wildcard");
        let a = addrs(dir.path());
        assert_eq!(a[0], (vec![word(new)], vec![word(other)]));
        assert_eq!(a[1], (vec![0], vec![0]));
        assert_eq!(a[2].0, vec![0, 0, m, word(new)]);
        assert_eq!(a[3], (vec![word(other)], vec![word(old)]));
        let n = readdress(dir.path(), old, new, Side::Remote).unwrap();
        assert_eq!(n, 1);
        assert_eq!(addrs(dir.path())[3], (vec![word(other)], vec![word(new)]));
        // Nothing left to change: the file stays as it is.
        let before = std::fs::read(dir.path().join("files.img")).unwrap();
        assert_eq!(readdress(dir.path(), old, new, Side::Remote).unwrap(), 0);
        assert_eq!(std::fs::read(dir.path().join("files.img")).unwrap(), before);
    }

    #[test]
    fn the_word_is_the_address_bytes_in_network_order() {
        // 10.77.1.2 as CRIU writes it on x86: 0x02014d0a.
        assert_eq!(word("10.77.1.2".parse().unwrap()), 0x0201_4d0a);
    }

    #[test]
    fn a_checkpoint_without_files_is_left_alone_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(readdress(dir.path(), a, b, Side::Local).unwrap(), 0);
        std::fs::write(dir.path().join("files.img"), b"not an image").unwrap();
        assert!(readdress(dir.path(), a, b, Side::Local).is_err());
    }
}

//! A whole image file, decoded so that writing it back gives the same bytes: its magics,
//! each entry's message and the raw data some images put after an entry (a TCP socket's
//! queues, a pipe's contents), and any bytes past the last entry that decoded. Files
//! without a protobuf magic (`pages-*.img`, netlink dumps, archives) stay bytes.

use std::path::Path;

use super::magic::{entry_type, magic_name, payload_len};
use super::schema::Schema;
use super::tree::Message;
use crate::images::format::{IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, MAX_ENTRY};
use crate::images::{read_meta_file, ImageError, Magic};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub message: Message,
    /// Raw bytes that follow the entry in its file.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoImage {
    /// The common or service magic before the image's own (none for the inventory).
    pub head: Option<u32>,
    pub magic: u32,
    pub entries: Vec<Entry>,
    /// Bytes after the last entry that decoded (kept as they were).
    pub tail: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Proto(ProtoImage),
    /// Not a protobuf image: its bytes.
    Raw(Vec<u8>),
}

/// `pages-*.img` and similar: page data, never read whole.
pub fn is_page_data(name: &str) -> bool {
    crate::images::is_pages_file(name)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl ProtoImage {
    /// The message type of entry `index` (pagemaps start with a head).
    pub fn entry_type(&self, index: usize) -> Option<&'static str> {
        entry_type(self.magic, index)
    }

    pub fn magic_name(&self) -> String {
        magic_name(self.magic)
    }
}

impl Image {
    /// Decodes an image file's bytes.
    pub fn decode(buf: Vec<u8>, schema: &Schema) -> Image {
        let (head, at) = match u32_at(&buf, 0) {
            Some(m) if m == IMG_COMMON_MAGIC || m == IMG_SERVICE_MAGIC => (Some(m), 4),
            Some(m) if m == Magic::Inventory.value() => (None, 0),
            _ => return Image::Raw(buf),
        };
        let Some(magic) = u32_at(&buf, at) else {
            return Image::Raw(buf);
        };
        let mut img = ProtoImage {
            head,
            magic,
            entries: Vec::new(),
            tail: Vec::new(),
        };
        let mut at = at + 4;
        while at < buf.len() {
            match next_entry(&buf, at, &img, schema) {
                Some((entry, next)) => {
                    img.entries.push(entry);
                    at = next;
                }
                None => break,
            }
        }
        img.tail = buf[at..].to_vec();
        Image::Proto(img)
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Image::Raw(b) => b.clone(),
            Image::Proto(p) => {
                let mut out = Vec::new();
                if let Some(h) = p.head {
                    out.extend_from_slice(&h.to_le_bytes());
                }
                out.extend_from_slice(&p.magic.to_le_bytes());
                for e in &p.entries {
                    let body = e.message.encode();
                    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(&e.payload);
                }
                out.extend_from_slice(&p.tail);
                out
            }
        }
    }

    /// Reads and decodes one image file (not page data).
    pub fn read(path: &Path) -> Result<Image, ImageError> {
        let buf = read_meta_file(path)?;
        Ok(Image::decode(buf, Schema::criu()))
    }
}

/// The entry at `at` and where the next one starts; none when what is there does not
/// decode as an entry (the rest of the file is then kept as the tail).
fn next_entry(buf: &[u8], at: usize, img: &ProtoImage, schema: &Schema) -> Option<(Entry, usize)> {
    let len = u32_at(buf, at)?;
    if len > MAX_ENTRY {
        return None;
    }
    let start = at + 4;
    let end = start.checked_add(len as usize)?;
    let body = buf.get(start..end)?;
    let ty = img
        .entry_type(img.entries.len())
        .and_then(|n| schema.message(n));
    let message = Message::decode(body, ty, schema).ok()?;
    if message.encode() != body {
        return None;
    }
    let stop = match payload_len(img.magic, &message) {
        Some(extra) => end.checked_add(usize::try_from(extra).ok()?)?,
        None => buf.len(),
    };
    let payload = buf.get(end..stop)?.to_vec();
    Some((Entry { message, payload }, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(head: Option<u32>, magic: u32, entries: &[(&[u8], &[u8])], tail: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(h) = head {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.extend_from_slice(&magic.to_le_bytes());
        for (body, payload) in entries {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(payload);
        }
        out.extend_from_slice(tail);
        out
    }

    #[test]
    fn a_tcp_stream_keeps_its_queues_and_writes_back_the_same_bytes() {
        // inq_len = 3, outq_len = 2, then the queues' bytes.
        let body = [0x08, 3, 0x18, 2];
        let buf = framed(
            Some(IMG_COMMON_MAGIC),
            super::super::magic::TCP_STREAM,
            &[(&body, b"abcde")],
            b"",
        );
        let img = Image::decode(buf.clone(), Schema::criu());
        let Image::Proto(p) = &img else {
            panic!("not decoded")
        };
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].payload, b"abcde");
        assert!(p.tail.is_empty());
        assert_eq!(img.encode(), buf);
    }

    #[test]
    fn what_does_not_decode_is_kept_as_the_tail_or_as_bytes() {
        let buf = framed(
            Some(IMG_COMMON_MAGIC),
            0x5505_3847,
            &[(&[0x08, 1], b"")],
            &[0xff, 0xff, 0xff, 0x7f, 1, 2],
        );
        let img = Image::decode(buf.clone(), Schema::criu());
        let Image::Proto(p) = &img else {
            panic!("not decoded")
        };
        assert_eq!((p.entries.len(), p.tail.len()), (1, 6));
        assert_eq!(img.encode(), buf);
        let raw = vec![0x1f, 0x8b, 8, 0];
        assert_eq!(Image::decode(raw.clone(), Schema::criu()), Image::Raw(raw));
    }
}

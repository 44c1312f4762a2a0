//! Writing and reading the pre-copy block stream (format in `ferry_proto::precopy`).

use std::io::{Read, Write};

use ferry_proto::precopy::{
    push_page, push_ref, BlockHeader, BlockKind, PageHash, BLOCK_HEADER_LEN, MAX_BLOCK, PAGE_RECORD,
};

pub use ferry_types::Compress;

/// zstd's fastest level: the link, not the CPU, should set the pace.
const ZSTD_LEVEL: i32 = 1;

/// What a writer sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes of records before compression.
    pub raw: u64,
    /// Bytes on the wire, headers included.
    pub wire: u64,
    pub pages: u64,
    pub refs: u64,
    /// Blocks sent compressed, and blocks where compression did not pay.
    pub compressed_blocks: u64,
    pub plain_blocks: u64,
}

impl<W: Write> std::fmt::Debug for BlockWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("sent", &self.sent)
            .finish()
    }
}

/// Buffers records into blocks and writes them.
pub struct BlockWriter<W: Write> {
    out: W,
    mode: Compress,
    buf: Vec<u8>,
    file: u32,
    zbuf: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// After blocks that did not compress, skip trying for a while (doubling).
    skip: u32,
    misses: u32,
    pub sent: Sent,
}

impl<W: Write> BlockWriter<W> {
    pub fn new(out: W, mode: Compress) -> std::io::Result<Self> {
        let compressor = match mode {
            Compress::Zstd => Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
            Compress::None => None,
        };
        Ok(Self {
            out,
            mode,
            buf: Vec::with_capacity(MAX_BLOCK),
            file: 0,
            zbuf: vec![0u8; zstd::zstd_safe::compress_bound(MAX_BLOCK)],
            compressor,
            skip: 0,
            misses: 0,
            sent: Sent::default(),
        })
    }

    fn switch_file(&mut self, file: u32) -> std::io::Result<()> {
        if file != self.file {
            self.flush_block()?;
            self.file = file;
        }
        Ok(())
    }

    pub fn page(&mut self, file: u32, hash: PageHash, page: &[u8]) -> std::io::Result<()> {
        self.switch_file(file)?;
        push_page(&mut self.buf, hash, page);
        self.sent.pages += 1;
        if self.buf.len() + PAGE_RECORD > MAX_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    pub fn reference(&mut self, file: u32, hash: PageHash) -> std::io::Result<()> {
        self.switch_file(file)?;
        push_ref(&mut self.buf, hash);
        self.sent.refs += 1;
        if self.buf.len() + PAGE_RECORD > MAX_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Sends a marker block after whatever is buffered, and pushes it out.
    pub fn marker(&mut self, kind: BlockKind, file: u32, value: u32) -> std::io::Result<()> {
        self.flush_block()?;
        let h = BlockHeader {
            kind,
            compressed: false,
            file,
            raw_len: value,
            wire_len: 0,
        };
        self.out.write_all(&h.encode())?;
        self.sent.wire += BLOCK_HEADER_LEN as u64;
        self.out.flush()
    }

    fn compress(&mut self) -> Option<usize> {
        let c = self.compressor.as_mut()?;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let n = c.compress_to_buffer(&self.buf, &mut self.zbuf).ok()?;
        // Only where it pays: at least a tenth smaller.
        if n * 10 <= self.buf.len() * 9 {
            self.misses = 0;
            Some(n)
        } else {
            self.misses = (self.misses + 1).min(6);
            self.skip = (1 << self.misses) - 1;
            None
        }
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let raw = self.buf.len();
        let packed = if self.mode == Compress::Zstd {
            self.compress()
        } else {
            None
        };
        let (payload, compressed): (&[u8], bool) = match packed {
            Some(n) => (&self.zbuf[..n], true),
            None => (&self.buf, false),
        };
        let h = BlockHeader {
            kind: BlockKind::Records,
            compressed,
            file: self.file,
            raw_len: raw as u32,
            wire_len: payload.len() as u32,
        };
        self.out.write_all(&h.encode())?;
        self.out.write_all(payload)?;
        self.sent.raw += raw as u64;
        self.sent.wire += (BLOCK_HEADER_LEN + payload.len()) as u64;
        if compressed {
            self.sent.compressed_blocks += 1;
        } else {
            self.sent.plain_blocks += 1;
        }
        self.buf.clear();
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The output, once everything buffered was sent (call [`BlockWriter::marker`] first).
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<R: Read> std::fmt::Debug for BlockReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("wire_bytes", &self.wire_bytes)
            .finish()
    }
}

/// Reads blocks, decompressing them.
pub struct BlockReader<R: Read> {
    input: R,
    wire: Vec<u8>,
    payload: Vec<u8>,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// Bytes read from the wire.
    pub wire_bytes: u64,
}

impl<R: Read> BlockReader<R> {
    pub fn new(input: R) -> std::io::Result<Self> {
        Ok(Self {
            input,
            wire: Vec::with_capacity(MAX_BLOCK + 4096),
            payload: Vec::with_capacity(MAX_BLOCK),
            decompressor: zstd::bulk::Decompressor::new()?,
            wire_bytes: 0,
        })
    }

    /// The next block's header and its decompressed payload.
    pub fn next_block(&mut self) -> std::io::Result<(BlockHeader, &[u8])> {
        let mut hb = [0u8; BLOCK_HEADER_LEN];
        self.input.read_exact(&mut hb)?;
        let h = BlockHeader::decode(&hb).map_err(invalid)?;
        self.wire_bytes += BLOCK_HEADER_LEN as u64 + u64::from(h.wire_len);
        if h.kind != BlockKind::Records {
            return Ok((h, &[]));
        }
        self.wire.resize(h.wire_len as usize, 0);
        self.input.read_exact(&mut self.wire)?;
        if !h.compressed {
            return Ok((h, &self.wire));
        }
        self.payload.clear();
        self.payload.reserve(MAX_BLOCK);
        let n = self
            .decompressor
            .decompress_to_buffer(&self.wire, &mut self.payload)
            .map_err(|e| invalid(format!("a compressed block is corrupt: {e}")))?;
        if n != h.raw_len as usize {
            return Err(invalid(format!(
                "a block decompressed to {n} bytes instead of {}",
                h.raw_len
            )));
        }
        Ok((h, &self.payload))
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.input
    }
}

pub fn invalid(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::precopy::{records, Record, PAGE};

    fn roundtrip(mode: Compress, pages: &[Vec<u8>]) -> (Sent, Vec<(u32, Vec<u8>)>) {
        let mut w = BlockWriter::new(Vec::new(), mode).unwrap();
        for (i, p) in pages.iter().enumerate() {
            w.page(1, i as u128, p).unwrap();
        }
        w.reference(2, 7).unwrap();
        w.marker(BlockKind::End, 0, 0).unwrap();
        let sent = w.sent;
        let bytes = std::mem::take(w.get_mut());
        assert_eq!(bytes.len() as u64, sent.wire);
        let mut r = BlockReader::new(&bytes[..]).unwrap();
        let mut got = Vec::new();
        loop {
            let (h, payload) = r.next_block().unwrap();
            if h.kind == BlockKind::End {
                break;
            }
            for rec in records(payload) {
                match rec.unwrap() {
                    Record::Page(_, p) => got.push((h.file, p.to_vec())),
                    Record::Ref(x) => got.push((h.file, x.to_le_bytes().to_vec())),
                }
            }
        }
        (sent, got)
    }

    #[test]
    fn compressible_pages_shrink_and_come_back_intact() {
        let pages: Vec<Vec<u8>> = (0..600).map(|i| vec![(i % 7) as u8; PAGE]).collect();
        let (sent, got) = roundtrip(Compress::Zstd, &pages);
        assert!(sent.wire * 10 < sent.raw, "{sent:?}");
        assert_eq!(got.len(), 601);
        assert_eq!(got[5].1, pages[5]);
        assert_eq!(got[600].0, 2);
    }

    #[test]
    fn random_pages_are_sent_plain() {
        let mut x = 1u64;
        let pages: Vec<Vec<u8>> = (0..600)
            .map(|_| {
                (0..PAGE)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let (sent, got) = roundtrip(Compress::Zstd, &pages);
        assert_eq!(sent.compressed_blocks, 0);
        assert!(sent.wire >= sent.raw);
        assert_eq!(got[599].1, pages[599]);
    }

    #[test]
    fn a_corrupt_compressed_block_is_an_error() {
        let pages: Vec<Vec<u8>> = (0..10).map(|_| vec![1u8; PAGE]).collect();
        let mut w = BlockWriter::new(Vec::new(), Compress::Zstd).unwrap();
        for (i, p) in pages.iter().enumerate() {
            w.page(0, i as u128, p).unwrap();
        }
        w.marker(BlockKind::End, 0, 0).unwrap();
        let mut bytes = std::mem::take(w.get_mut());
        bytes[BLOCK_HEADER_LEN + 5] ^= 0xff;
        let mut r = BlockReader::new(&bytes[..]).unwrap();
        assert!(r.next_block().is_err());
    }
}

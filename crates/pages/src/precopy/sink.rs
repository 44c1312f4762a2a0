//! The final copy: CRIU's page files, read from the dump's FIFOs, sent as records — a
//! page the destination holds travels as its hash.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::RawFd;

use ferry_proto::precopy::{BlockKind, PageHash, PAGE};

use super::blocks::{BlockWriter, Sent};
use super::hash::PageHasher;
use crate::stream::FifoSink;

impl<W: Write + Send + 'static> std::fmt::Debug for DedupeSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupeSink")
            .field("held", &self.held.len())
            .finish()
    }
}

pub struct DedupeSink<W: Write + Send + 'static> {
    writer: BlockWriter<W>,
    hasher: PageHasher,
    held: HashSet<PageHash>,
    /// Bytes of a page split across reads, per file.
    partial: HashMap<u32, Vec<u8>>,
    pages: HashMap<u32, u32>,
    buf: Vec<u8>,
    done: Option<std::sync::mpsc::Sender<Sent>>,
}

impl<W: Write + Send + 'static> DedupeSink<W> {
    pub fn new(
        writer: BlockWriter<W>,
        hasher: PageHasher,
        held: HashSet<PageHash>,
        done: std::sync::mpsc::Sender<Sent>,
    ) -> Self {
        Self {
            writer,
            hasher,
            held,
            partial: HashMap::new(),
            pages: HashMap::new(),
            buf: Vec::new(),
            done: Some(done),
        }
    }

    /// Sends the pages in `data` (whole pages) as records of file `id`.
    fn pages_of(&mut self, id: u32, data: &[u8]) -> std::io::Result<()> {
        for page in data.chunks_exact(PAGE) {
            let h = self.hasher.hash(page);
            if self.held.contains(&h) {
                self.writer.reference(id, h)?;
            } else {
                self.writer.page(id, h, page)?;
                self.held.insert(h);
            }
        }
        *self.pages.entry(id).or_default() += (data.len() / PAGE) as u32;
        Ok(())
    }
}

fn read_exact(fd: RawFd, buf: &mut [u8]) -> std::io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: reading into the unfilled part of `buf`.
        let n = unsafe { libc::read(fd, buf[off..].as_mut_ptr().cast(), buf.len() - off) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        off += n as usize;
    }
    Ok(())
}

impl<W: Write + Send + 'static> FifoSink for DedupeSink<W> {
    fn chunk(&mut self, id: u32, fifo: RawFd, len: usize) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let carried = self.partial.remove(&id).unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&carried);
        let start = buf.len();
        buf.resize(start + len, 0);
        read_exact(fifo, &mut buf[start..])?;
        let whole = buf.len() - buf.len() % PAGE;
        let r = self.pages_of(id, &buf[..whole]);
        if whole < buf.len() {
            self.partial.insert(id, buf[whole..].to_vec());
        }
        self.buf = buf;
        r
    }

    fn file_done(&mut self, id: u32) -> std::io::Result<()> {
        if self.partial.remove(&id).is_some_and(|p| !p.is_empty()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("pages-{id}.img is not a whole number of pages"),
            ));
        }
        // A FIFO CRIU never wrote to has no file at the destination either.
        match self.pages.get(&id).copied() {
            Some(n) => self.writer.marker(BlockKind::FileEnd, id, n),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.writer.marker(BlockKind::End, 0, 0)?;
        if let Some(d) = self.done.take() {
            let _ = d.send(self.writer.sent);
        }
        Ok(())
    }
}

//! Which build of ferry this is: the GNU build id the linker wrote into the binary (an
//! ELF note), so that the copy on a remote host is known to be this very build.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const SHT_NOTE: u32 = 7;
const NT_GNU_BUILD_ID: u32 = 3;

/// The running binary's build id (hex), or, when it carries none, its version with its
/// size and modification time, which differ between builds too.
pub fn of_this_binary() -> String {
    let exe = Path::new("/proc/self/exe");
    if let Some(id) = read(exe) {
        return id;
    }
    let meta = std::fs::metadata(exe).ok();
    let (len, mtime) = meta.map_or((0, 0), |m| {
        use std::os::unix::fs::MetadataExt;
        (m.len(), m.mtime())
    });
    format!("{}-{len:x}-{mtime:x}", env!("CARGO_PKG_VERSION"))
}

/// The build id in the note sections of the 64-bit little-endian ELF file at `path`.
pub fn read(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let shoff = u64::from_le_bytes(head[0x28..0x30].try_into().ok()?);
    let shentsize = u16::from_le_bytes(head[0x3a..0x3c].try_into().ok()?) as usize;
    let shnum = u16::from_le_bytes(head[0x3c..0x3e].try_into().ok()?) as usize;
    if shentsize < 0x28 || shnum > 4096 {
        return None;
    }
    let mut table = vec![0u8; shentsize * shnum];
    f.seek(SeekFrom::Start(shoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    for sh in table.chunks_exact(shentsize) {
        if u32::from_le_bytes(sh[4..8].try_into().ok()?) != SHT_NOTE {
            continue;
        }
        let off = u64::from_le_bytes(sh[0x18..0x20].try_into().ok()?);
        let size = u64::from_le_bytes(sh[0x20..0x28].try_into().ok()?);
        if size > 4096 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut notes).ok()?;
        if let Some(id) = gnu_build_id(&notes) {
            return Some(id);
        }
    }
    None
}

/// The GNU build id among the notes of one section.
fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let word =
            |i: usize| u32::from_le_bytes([notes[i], notes[i + 1], notes[i + 2], notes[i + 3]]);
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_end = 12 + pad(namesz);
        let end = name_end + pad(descsz);
        if end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" && descsz > 0 {
            return Some(hex::encode(&notes[name_end..name_end + descsz]));
        }
        notes = &notes[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gnu_note_gives_its_id_and_other_notes_are_skipped() {
        let mut n = Vec::new();
        // An ABI tag note first, then the build id.
        n.extend(4u32.to_le_bytes());
        n.extend(16u32.to_le_bytes());
        n.extend(1u32.to_le_bytes());
        n.extend(b"GNU\0");
        n.extend([0u8; 16]);
        n.extend(4u32.to_le_bytes());
        n.extend(4u32.to_le_bytes());
        n.extend(3u32.to_le_bytes());
        n.extend(b"GNU\0");
        n.extend([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(gnu_build_id(&n).as_deref(), Some("deadbeef"));
        assert_eq!(gnu_build_id(&n[..30]), None);
    }

    #[test]
    fn this_test_binary_has_an_identity() {
        let id = of_this_binary();
        assert!(id.len() >= 8, "{id}");
        assert_eq!(id, of_this_binary());
    }
}

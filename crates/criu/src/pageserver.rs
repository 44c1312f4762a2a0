//! CRIU's page-server protocol, the part ferry speaks: a lazy dump serves pages to a
//! client that sends `PS_IOV_GET` requests.
//!
//! Every request and answer starts with a 32-byte header: `u32 cmd`, 4 bytes of padding,
//! `u64 nr_pages`, `u64 vaddr`, `u64 dst_id` (the process's pid in the images). For
//! `PS_IOV_GET` the server answers with `PS_IOV_ADD_F` (flags in the upper 16 bits of
//! `cmd`) and `nr_pages` pages of data; it may send fewer pages than asked (up to the
//! end of the run that holds the address). Asking for pages it does not hold ends the
//! server, so ferry only asks for pages the pagemap marks lazy. `PS_IOV_CLOSE` asks the
//! server to finish; it answers with a 4-byte status.

pub const PSI_LEN: usize = 32;
pub const PS_IOV_ADD_F: u32 = 6;
pub const PS_IOV_GET: u32 = 7;
pub const PS_IOV_CLOSE: u32 = 0x1023;
const PS_CMD_BITS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psi {
    pub cmd: u32,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Psi {
    pub fn get(pid: u32, vaddr: u64, nr_pages: u64) -> Self {
        Self {
            cmd: PS_IOV_GET,
            nr_pages,
            vaddr,
            dst_id: u64::from(pid),
        }
    }

    pub fn close() -> Self {
        Self {
            cmd: PS_IOV_CLOSE,
            nr_pages: 0,
            vaddr: 0,
            dst_id: 0,
        }
    }

    pub fn encode(&self) -> [u8; PSI_LEN] {
        let mut b = [0u8; PSI_LEN];
        b[..4].copy_from_slice(&self.cmd.to_le_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.dst_id.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; PSI_LEN]) -> Self {
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        Self {
            cmd: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }

    /// The command without its flags.
    pub fn command(&self) -> u32 {
        self.cmd & ((1 << PS_CMD_BITS) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_criu() {
        let p = Psi::get(1, 0x7f00_0000_1000, 256);
        let b = p.encode();
        assert_eq!(&b[..4], &7u32.to_le_bytes());
        assert_eq!(&b[4..8], &[0; 4], "padding after the u32");
        assert_eq!(Psi::decode(&b), p);
        let answer = Psi {
            cmd: (4 << 16) | PS_IOV_ADD_F,
            ..p
        };
        assert_eq!(answer.command(), PS_IOV_ADD_F);
    }
}

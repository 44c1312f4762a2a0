//! `inventory.img`: the image set's version and the dump's CRIU run id.

use super::format::{entries, ImageError, Magic};

#[derive(Clone, PartialEq, prost::Message)]
struct InventoryEntry {
    #[prost(uint32, required, tag = "1")]
    img_version: u32,
    #[prost(bool, optional, tag = "2")]
    fdinfo_per_id: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    ns_per_id: Option<bool>,
    #[prost(uint32, optional, tag = "5")]
    root_cg_set: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    dump_uptime: Option<u64>,
    #[prost(uint32, optional, tag = "9")]
    pre_dump_mode: Option<u32>,
    #[prost(bool, optional, tag = "10")]
    tcp_close: Option<bool>,
    #[prost(uint32, optional, tag = "11")]
    network_lock_method: Option<u32>,
    #[prost(string, optional, tag = "13")]
    dump_criu_run_id: Option<String>,
}

/// What ferry needs from `inventory.img`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub img_version: u32,
    /// The run id of the CRIU that dumped; CRIU names its nftables lock table after it.
    pub dump_run_id: Option<String>,
    /// 1 = iptables, 2 = nftables, 3 = skip (CRIU's enum).
    pub network_lock_method: Option<u32>,
}

/// CRIU truncates nftables table names to this many bytes (including the family prefix).
const NFT_TABLE_NAME_MAX: usize = 32;

impl Inventory {
    pub fn parse(buf: &[u8], what: &str) -> Result<Self, ImageError> {
        let items = entries(buf, Magic::Inventory, what)?;
        let first = items.first().ok_or_else(|| ImageError::Invalid {
            what: what.to_string(),
            detail: "no inventory entry".into(),
        })?;
        let e: InventoryEntry =
            prost::Message::decode(*first).map_err(|source| ImageError::Decode {
                what: what.to_string(),
                source,
            })?;
        if let Some(id) = &e.dump_criu_run_id {
            if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(ImageError::Invalid {
                    what: what.to_string(),
                    detail: "the CRIU run id is not a UUID".into(),
                });
            }
        }
        Ok(Inventory {
            img_version: e.img_version,
            dump_run_id: e.dump_criu_run_id,
            network_lock_method: e.network_lock_method,
        })
    }

    pub fn read(path: &std::path::Path) -> Result<Self, ImageError> {
        let buf = super::read_meta_file(path)?;
        Self::parse(&buf, &path.display().to_string())
    }

    /// The `inet` table CRIU's restore deletes when it unlocks the network with
    /// nftables: `CRIU-<run id>`, cut so that `inet CRIU-…` fits CRIU's 32-byte buffer.
    pub fn nft_lock_table(&self) -> Option<String> {
        let id = self.dump_run_id.as_deref()?;
        let full = format!("inet CRIU-{id}");
        let cut = &full[..full.len().min(NFT_TABLE_NAME_MAX - 1)];
        Some(cut.trim_start_matches("inet ").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `inventory.img` written by CRIU 4.2.1.
    const INV: &[u8] = b"\x16\x31\x31\x58\x4e\x00\x00\x00\x08\x02\x10\x01\x1a\x18\x08\x01\x10\x01\x18\x01\x20\x01\x28\x01\x30\x02\x38\x03\x40\x04\x48\x06\x50\x07\x58\x08\x60\x05\x20\x01\x28\x01\x30\x00\x58\x01\x62\x00\x6a\x247bddd2f7-ce0d-4e45-a518-d7c02baaab34";

    #[test]
    fn reads_run_id() {
        let inv = Inventory::parse(INV, "inventory.img").unwrap();
        assert_eq!(inv.img_version, 2);
        assert_eq!(
            inv.dump_run_id.as_deref(),
            Some("7bddd2f7-ce0d-4e45-a518-d7c02baaab34")
        );
        assert_eq!(inv.network_lock_method, Some(1));
    }

    #[test]
    fn nft_table_name_is_cut_like_criu() {
        let inv = Inventory::parse(INV, "inventory.img").unwrap();
        let t = inv.nft_lock_table().unwrap();
        assert_eq!(t, "CRIU-7bddd2f7-ce0d-4e45-a5");
        assert_eq!(format!("inet {t}").len(), 31);
    }
}

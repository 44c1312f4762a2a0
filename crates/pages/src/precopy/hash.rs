//! Page hashes. A page's identity on the wire is a 128-bit keyed hash of its content:
//! the key is drawn per session and never leaves the source, so a peer cannot craft two
//! pages that collide.

use ferry_proto::precopy::PageHash;
use xxhash_rust::xxh3::xxh3_128_with_secret;

const SECRET_LEN: usize = 192;

/// Hashes pages with a per-session secret.
#[derive(Clone)]
pub struct PageHasher {
    secret: Box<[u8; SECRET_LEN]>,
}

impl std::fmt::Debug for PageHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageHasher(..)")
    }
}

impl PageHasher {
    /// A hasher with a fresh random key.
    pub fn random() -> std::io::Result<Self> {
        let mut secret = Box::new([0u8; SECRET_LEN]);
        getrandom::getrandom(&mut secret[..]).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { secret })
    }

    #[cfg(test)]
    pub fn fixed(seed: u8) -> Self {
        let mut secret = Box::new([0u8; SECRET_LEN]);
        for (i, b) in secret.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8).wrapping_mul(31);
        }
        Self { secret }
    }

    pub fn hash(&self, page: &[u8]) -> PageHash {
        xxh3_128_with_secret(page, &self.secret[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_pages_hash_alike_and_keys_differ() {
        let a = PageHasher::fixed(1);
        let b = PageHasher::fixed(2);
        let p = vec![5u8; 4096];
        let mut q = p.clone();
        q[4095] = 6;
        assert_eq!(a.hash(&p), a.hash(&p.clone()));
        assert_ne!(a.hash(&p), a.hash(&q));
        assert_ne!(a.hash(&p), b.hash(&p));
    }
}

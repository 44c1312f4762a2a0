//! Packets a network lock dropped, kept to be delivered once the container runs again
//! (`ferry-netns`'s `held` module catches and delivers them).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Packets kept per direction.
pub const HELD_PACKETS: usize = 512;
/// Bytes of copies kept per direction.
pub const HELD_BYTES: usize = 256 << 10;

/// One caught packet, from its IP header on; hex on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPacket(pub Vec<u8>);

impl Serialize for HeldPacket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for HeldPacket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("a held packet is not hex");
        if s.len() % 2 != 0 || !s.is_ascii() {
            return Err(bad());
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, _>>()
            .map(HeldPacket)
    }
}

/// What was kept of one locked period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Held {
    /// Packets the container's peers sent it, oldest first.
    #[serde(default)]
    pub inbound: Vec<HeldPacket>,
    /// Packets the container sent, oldest first.
    #[serde(default)]
    pub outbound: Vec<HeldPacket>,
    /// Packets caught but not kept (over the bounds).
    #[serde(default)]
    pub overflow: u32,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty() && self.outbound.is_empty()
    }

    /// Bytes of all packets kept.
    pub fn bytes(&self) -> usize {
        self.inbound
            .iter()
            .chain(&self.outbound)
            .map(|p| p.0.len())
            .sum()
    }

    /// `self`'s packets, then `later`'s.
    pub fn then(mut self, later: Held) -> Held {
        self.inbound.extend(later.inbound);
        self.outbound.extend(later.outbound);
        self.overflow += later.overflow;
        self
    }
}

/// What delivering held packets did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Peers' packets handed to the container's sockets.
    pub inbound: u32,
    /// The container's packets sent onwards (after cutting to the link's size).
    pub outbound: u32,
    /// Packets refused: not IPv4 TCP, not to or from the container's address, or resets.
    pub refused: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_travel_as_hex_and_bad_hex_is_refused() {
        let small = Held {
            inbound: vec![HeldPacket(vec![0xde, 0xad, 0x0f])],
            ..Default::default()
        };
        let text = serde_json::to_string(&small).unwrap();
        assert_eq!(text, r#"{"inbound":["dead0f"],"outbound":[],"overflow":0}"#);
        assert_eq!(serde_json::from_str::<Held>(&text).unwrap(), small);
        for bad in [
            r#"{"inbound":["xyz0"]}"#,
            r#"{"inbound":["abc"]}"#,
            r#"{"inbound":["éé"]}"#,
        ] {
            assert!(serde_json::from_str::<Held>(bad).is_err(), "{bad}");
        }
        let both = small.clone().then(Held {
            outbound: vec![HeldPacket(vec![1])],
            overflow: 2,
            ..Default::default()
        });
        assert_eq!(
            (both.inbound.len(), both.outbound.len(), both.overflow),
            (1, 1, 2)
        );
        assert_eq!(both.bytes(), 4);
    }
}

//! Packets held while a container's network is locked, delivered once it runs.
//!
//! ferry's lock drops every packet, so a peer whose segment arrived during the downtime
//! waits for its retransmission timer: 200 ms, then 400 ms more, then 800 ms more. The
//! lock's chains therefore also log each IPv4 TCP packet they drop, whole, to a netfilter
//! log group, and a [`Catcher`] in the namespace keeps copies. Once the container runs
//! where it is going to stay (the destination after `Commit`, or the source after a
//! rollback), [`deliver`] hands the peers' packets to its sockets and sends its own
//! onwards, so each connection picks up within a round trip.
//!
//! Safety is unchanged: the lock still drops everything; copies are delivered only to
//! the copy of the container that is committed, which holds every byte they acknowledge
//! (packets it sent itself), or which may take them as if they had come late (its
//! peers'). A reset is never sent onwards. Copies are bounded; what the bound leaves out
//! is retransmitted by TCP as before.

mod catch;
mod nflog;
pub mod packet;
mod replay;
pub mod watch;

pub use catch::Catcher;
pub use ferry_types::held::{HELD_BYTES, HELD_PACKETS};
pub use ferry_types::{Delivered, Held, HeldPacket};
pub use replay::deliver;

/// Log group for packets coming in to a locked namespace.
pub const GROUP_IN: u16 = 17920;
/// Log group for packets a locked namespace sends.
pub const GROUP_OUT: u16 = 17921;

/// Keeps `p` in `held` if the bounds allow.
pub(crate) fn keep(held: &mut Held, inbound: bool, p: &[u8]) {
    let list = if inbound {
        &mut held.inbound
    } else {
        &mut held.outbound
    };
    let bytes: usize = list.iter().map(|h| h.0.len()).sum();
    if list.len() >= HELD_PACKETS || bytes + p.len() > HELD_BYTES {
        held.overflow += 1;
        return;
    }
    list.push(HeldPacket(p.to_vec()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_bounded() {
        let mut h = Held::default();
        for _ in 0..HELD_PACKETS + 3 {
            keep(&mut h, true, &[1, 2, 3]);
        }
        keep(&mut h, false, &vec![0; HELD_BYTES + 1]);
        keep(&mut h, false, &[0xab]);
        assert_eq!(h.inbound.len(), HELD_PACKETS);
        assert_eq!(h.outbound.len(), 1);
        assert_eq!(h.overflow, 4);
    }
}

//! The host's end of a container's link that ferry did not make: the veth whose peer is
//! `eth0` in the container's namespace.

use crate::cmd::{Cmd, Runner};
use crate::error::NetError;
use crate::ns::Netns;

fn field(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key).and_then(serde_json::Value::as_u64)
}

/// `eth0`'s own index and its peer's, from `ip -j link show dev eth0`.
fn eth0_ends(json: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let l = v.get(0)?;
    Some((field(l, "ifindex")?, field(l, "link_index")?))
}

/// The interface of `ip -j link` (this namespace) with index `index` whose own peer is
/// `peer`: the two ends of one veth.
fn named(json: &str, index: u64, peer: u64) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.as_array()?
        .iter()
        .find(|l| field(l, "ifindex") == Some(index) && field(l, "link_index") == Some(peer))
        .and_then(|l| l.get("ifname")?.as_str().map(str::to_string))
}

/// The bridge interface `ifname` of this namespace is a port of, from `ip -j link show`.
fn master_of(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get(0)?.get("master")?.as_str().map(str::to_string)
}

/// The bridge that `ifname` (an interface of this namespace) is attached to, if any.
pub async fn bridge_of(runner: &impl Runner, ifname: &str) -> Result<Option<String>, NetError> {
    let out = runner
        .run(&Cmd::new("ip", &["-j", "link", "show", "dev", ifname]))
        .await?;
    Ok(master_of(&out))
}

/// The interface of this namespace at the other end of `eth0` in `netns`.
pub async fn host_peer(runner: &impl Runner, netns: &Netns) -> Result<String, NetError> {
    let ns = netns.name.as_str();
    let inside = runner
        .run(&Cmd::new(
            "ip",
            &["-n", ns, "-j", "link", "show", "dev", "eth0"],
        ))
        .await?;
    let (own, peer) = eth0_ends(&inside)
        .ok_or_else(|| NetError::Invalid(format!("{ns} has no eth0 that is one end of a veth")))?;
    let here = runner.run(&Cmd::new("ip", &["-j", "link", "show"])).await?;
    named(&here, peer, own).ok_or_else(|| {
        NetError::Invalid(format!(
            "the other end of eth0 in {ns} is not an interface of this host's namespace"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_end_of_a_veth_is_found_by_both_indices() {
        let inside = r#"[{"ifindex":2,"link_index":17,"ifname":"eth0","link_netnsid":0}]"#;
        assert_eq!(eth0_ends(inside), Some((2, 17)));
        let here = r#"[{"ifindex":1,"ifname":"lo"},
            {"ifindex":17,"link_index":5,"ifname":"other"},
            {"ifindex":17,"link_index":2,"ifname":"vuser","link_netnsid":3}]"#;
        assert_eq!(named(here, 17, 2).as_deref(), Some("vuser"));
        assert_eq!(named(here, 18, 2), None);
        assert_eq!(
            eth0_ends(r#"[{"ifindex":2,"ifname":"eth0"}]"#),
            None,
            "not a veth"
        );
        assert_eq!(
            master_of(r#"[{"ifname":"vuser","master":"br0"}]"#).as_deref(),
            Some("br0")
        );
        assert_eq!(master_of(r#"[{"ifname":"vuser"}]"#), None);
    }
}

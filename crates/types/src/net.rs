//! A container's network identity: what it keeps when it moves between hosts.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The network identity a container keeps across hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// Address with prefix, e.g. `10.77.1.10/16`.
    pub address: String,
    /// MAC address of the container's `eth0`.
    pub mac: String,
    /// Default gateway, if any.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The pod whose network namespace the container shares with others; the
    /// namespace is named after the pod instead of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl NetSpec {
    /// The name the namespace and its link are called by: the pod's, or the container's.
    pub fn owner<'a>(&'a self, container: &'a str) -> &'a str {
        self.pod.as_deref().unwrap_or(container)
    }
}

/// A MAC address derived from an IPv4 address (locally administered, unicast), so a
/// container keeps the same MAC wherever its address goes.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_for("10.77.1.10".parse().unwrap()), "02:42:0a:4d:01:0a");
    }

    #[test]
    fn a_pod_names_its_namespace() {
        let mut s = NetSpec {
            address: "10.0.0.1/24".into(),
            mac: mac_for("10.0.0.1".parse().unwrap()),
            gateway: None,
            pod: None,
        };
        assert_eq!(s.owner("web"), "web");
        s.pod = Some("shop".into());
        assert_eq!(s.owner("web"), "shop");
    }
}

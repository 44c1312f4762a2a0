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

/// A container's identity at a new address (`ferry migrate --new-ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddress {
    pub spec: NetSpec,
    pub old: Ipv4Addr,
    pub new: Ipv4Addr,
}

/// Why a new address cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewAddressError {
    #[error("--new-ip '{0}' is not an IPv4 address with an optional prefix, like 10.77.1.50 or 10.77.1.50/16")]
    Syntax(String),
    #[error("the container's address '{0}' is not an IPv4 address with a prefix")]
    Current(String),
    #[error(
        "the container already has the address {0}; give --new-ip another address, or leave it out"
    )]
    Same(Ipv4Addr),
    #[error("the container shares its network namespace with pod '{0}', whose members keep one address; move the pod without --new-ip")]
    Pod(String),
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, Option<u8>)> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p.parse::<u8>().ok().filter(|p| *p <= 32)?)),
        None => (s, None),
    };
    Some((ip.parse().ok()?, prefix))
}

impl NetSpec {
    /// The same identity at `new_ip` (`ADDR[/PREFIX]`; the current prefix without one).
    /// The MAC follows the address where it was derived from it.
    pub fn readdressed(&self, new_ip: &str) -> Result<NewAddress, NewAddressError> {
        if let Some(pod) = &self.pod {
            return Err(NewAddressError::Pod(pod.clone()));
        }
        let (new, prefix) =
            parse_cidr(new_ip).ok_or_else(|| NewAddressError::Syntax(new_ip.into()))?;
        let (old, old_prefix) = parse_cidr(&self.address)
            .and_then(|(a, p)| Some((a, p?)))
            .ok_or_else(|| NewAddressError::Current(self.address.clone()))?;
        if new == old {
            return Err(NewAddressError::Same(old));
        }
        let mut spec = self.clone();
        spec.address = format!("{new}/{}", prefix.unwrap_or(old_prefix));
        if self.mac == mac_for(old) {
            spec.mac = mac_for(new);
        }
        Ok(NewAddress { spec, old, new })
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
    fn a_new_address_keeps_the_prefix_unless_given_and_refuses_mistakes() {
        let s = NetSpec {
            address: "10.77.1.10/16".into(),
            mac: mac_for("10.77.1.10".parse().unwrap()),
            gateway: Some("10.77.0.1".into()),
            pod: None,
        };
        let n = s.readdressed("10.77.1.50").unwrap();
        assert_eq!(n.spec.address, "10.77.1.50/16");
        assert_eq!(n.spec.mac, "02:42:0a:4d:01:32");
        assert_eq!(n.spec.gateway, s.gateway);
        assert_eq!(
            (n.old.to_string(), n.new.to_string()),
            ("10.77.1.10".into(), "10.77.1.50".into())
        );
        assert_eq!(
            s.readdressed("10.77.1.50/24").unwrap().spec.address,
            "10.77.1.50/24"
        );
        for bad in ["10.77.1", "10.77.1.50/33", "fe80::1", "", "10.77.1.50/x"] {
            assert_eq!(
                s.readdressed(bad),
                Err(NewAddressError::Syntax(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            s.readdressed("10.77.1.10"),
            Err(NewAddressError::Same(_))
        ));
        let pod = NetSpec {
            pod: Some("shop".into()),
            ..s.clone()
        };
        assert!(matches!(
            pod.readdressed("10.77.1.50"),
            Err(NewAddressError::Pod(_))
        ));
        let other_mac = NetSpec {
            mac: "02:00:00:00:00:01".into(),
            ..s
        };
        assert_eq!(
            other_mac.readdressed("10.77.1.50").unwrap().spec.mac,
            "02:00:00:00:00:01"
        );
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

//! A container's link: its namespace's `eth0`, the veth peer on the host, the bridge.

use std::net::Ipv4Addr;

use ferry_types::NetSpec;
use sha2::{Digest, Sha256};

use crate::ns::validate_name;
use crate::{Cmd, NetError, Netns, Runner};

/// Everything needed to (re)create a container's network attachment on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLink {
    pub netns: Netns,
    /// The veth end in the host's namespace.
    pub host_if: String,
    /// A temporary name for the container's end before it becomes `eth0`.
    peer_if: String,
    pub bridge: String,
    pub spec: NetSpec,
    /// The host's namespace, when the caller is not in it (None: the caller's own).
    host_netns: Option<std::path::PathBuf>,
}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let bad = || {
        NetError::Invalid(format!(
            "'{s}' is not an IPv4 address with a prefix length (like 10.77.1.10/16)"
        ))
    };
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len == 0 || len > 32 {
        return Err(bad());
    }
    Ok((ip, len))
}

/// Parses a unicast MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Invalid(format!("'{s}' is not a unicast MAC address"));
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// Checks a whole network spec.
pub fn validate_spec(spec: &NetSpec) -> Result<(), NetError> {
    parse_cidr(&spec.address)?;
    parse_mac(&spec.mac)?;
    if let Some(gw) = &spec.gateway {
        gw.parse::<Ipv4Addr>()
            .map_err(|_| NetError::Invalid(format!("'{gw}' is not an IPv4 gateway address")))?;
    }
    Ok(())
}

fn short_hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..10].to_string()
}

impl ContainerLink {
    /// The link of `container` on a host whose container namespaces are named
    /// `<prefix>-<container>` (interface names derive from both, so several lab hosts on
    /// one machine never collide).
    pub fn new(
        prefix: &str,
        container: &str,
        bridge: &str,
        spec: NetSpec,
    ) -> Result<Self, NetError> {
        validate_spec(&spec)?;
        let key = format!("{prefix}/{container}");
        let netns = Netns::new(&format!("{prefix}-{container}"));
        validate_name(&netns.name)?;
        Ok(Self {
            netns,
            host_if: format!("fv{}", short_hash(&key)),
            peer_if: format!("fc{}", short_hash(&key)),
            bridge: bridge.to_string(),
            spec,
            host_netns: None,
        })
    }

    /// Runs the host-side commands inside `netns` (for callers outside the host's
    /// namespace, such as benchmarks driving a lab host).
    pub fn in_host_netns(mut self, netns: std::path::PathBuf) -> Self {
        self.host_netns = Some(netns);
        self
    }

    /// A command on the host side of the link.
    fn host(&self, args: &[&str]) -> Cmd {
        let c = Cmd::new("ip", args);
        match &self.host_netns {
            Some(ns) => c.in_netns(ns.clone()),
            None => c,
        }
    }

    /// Commands that build the link, leaving the host end down so nothing reaches the
    /// namespace until [`ContainerLink::up`].
    pub fn plan_create(&self) -> Vec<Cmd> {
        let ns = self.netns.name.as_str();
        let peer = self.peer_if.as_str();
        let mut cmds = vec![
            self.host(&[
                "link",
                "add",
                &self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                ns,
            ]),
            Cmd::new("ip", &["-n", ns, "link", "set", peer, "name", "eth0"]),
            Cmd::new(
                "ip",
                &["-n", ns, "link", "set", "eth0", "address", &self.spec.mac],
            ),
            Cmd::new(
                "ip",
                &["-n", ns, "addr", "add", &self.spec.address, "dev", "eth0"],
            ),
            Cmd::new("ip", &["-n", ns, "link", "set", "eth0", "up"]),
        ];
        if let Some(gw) = &self.spec.gateway {
            cmds.push(Cmd::new(
                "ip",
                &["-n", ns, "route", "add", "default", "via", gw],
            ));
        }
        cmds.push(self.host(&["link", "set", &self.host_if, "master", &self.bridge]));
        cmds
    }

    /// Creates the namespace and the link (host end down).
    pub async fn create(&self, runner: &impl Runner) -> Result<(), NetError> {
        self.netns.create(runner).await?;
        for c in self.plan_create() {
            if let Err(e) = runner.run(&c).await {
                let _ = self.destroy(runner).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Brings the host end up. In the caller's own namespace this is one ioctl
    /// (microseconds, inside the downtime); elsewhere it runs `ip`.
    pub async fn up(&self, runner: &impl Runner) -> Result<(), NetError> {
        self.set_up(runner, true).await
    }

    pub async fn down(&self, runner: &impl Runner) -> Result<(), NetError> {
        self.set_up(runner, false).await
    }

    async fn set_up(&self, runner: &impl Runner, up: bool) -> Result<(), NetError> {
        if self.host_netns.is_none() && runner.is_real() {
            return set_link_up(&self.host_if, up).map_err(|e| NetError::Failed {
                command: format!("set {} {}", self.host_if, if up { "up" } else { "down" }),
                stderr: e.to_string(),
            });
        }
        let state = if up { "up" } else { "down" };
        runner
            .run(&self.host(&["link", "set", &self.host_if, state]))
            .await
            .map(drop)
    }

    /// Removes the link and the namespace; parts already gone are fine.
    pub async fn destroy(&self, runner: &impl Runner) -> Result<(), NetError> {
        let _ = runner
            .run(&self.host(&["link", "del", &self.host_if]))
            .await;
        self.netns.delete(runner).await
    }

    /// Whether the host end exists in the current namespace.
    pub fn host_if_exists(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(&self.host_if)
            .exists()
    }
}

/// Sets an interface of the caller's network namespace up or down (SIOCSIFFLAGS).
pub fn set_link_up(name: &str, up: bool) -> std::io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!(
            "bad interface name '{name}'"
        )));
    }
    // SAFETY: a datagram socket used only for the interface ioctls below, closed after.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; the name fits (checked above) and stays NUL-terminated.
    let result = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            let flags = req.ifr_ifru.ifru_flags;
            req.ifr_ifru.ifru_flags = if up {
                flags | libc::IFF_UP as libc::c_short
            } else {
                flags & !(libc::IFF_UP as libc::c_short)
            };
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket created above.
    unsafe { libc::close(sock) };
    result
}

/// Reads the network identity of `eth0` in a namespace.
pub async fn inspect(runner: &impl Runner, netns: &Netns) -> Result<NetSpec, NetError> {
    let ns = netns.name.as_str();
    let addr = runner
        .run(&Cmd::new(
            "ip",
            &["-n", ns, "-j", "addr", "show", "dev", "eth0"],
        ))
        .await?;
    let route = runner
        .run(&Cmd::new(
            "ip",
            &["-n", ns, "-j", "route", "show", "default"],
        ))
        .await?;
    parse_inspect(&addr, &route)
}

fn parse_inspect(addr_json: &str, route_json: &str) -> Result<NetSpec, NetError> {
    let bad = |what: &str| NetError::Invalid(format!("cannot read eth0's {what}"));
    let v: serde_json::Value = serde_json::from_str(addr_json).map_err(|_| bad("addresses"))?;
    let link = v.get(0).ok_or_else(|| bad("link"))?;
    let mac = link
        .get("address")
        .and_then(|m| m.as_str())
        .ok_or_else(|| bad("MAC"))?;
    let inet = link
        .get("addr_info")
        .and_then(|a| a.as_array())
        .and_then(|a| {
            a.iter()
                .find(|i| i.get("family").and_then(|f| f.as_str()) == Some("inet"))
        })
        .ok_or_else(|| bad("IPv4 address"))?;
    let local = inet
        .get("local")
        .and_then(|l| l.as_str())
        .ok_or_else(|| bad("IPv4 address"))?;
    let plen = inet
        .get("prefixlen")
        .and_then(|p| p.as_u64())
        .ok_or_else(|| bad("prefix"))?;
    let r: serde_json::Value = serde_json::from_str(route_json).unwrap_or(serde_json::Value::Null);
    let gateway = r
        .get(0)
        .and_then(|d| d.get("gateway"))
        .and_then(|g| g.as_str())
        .map(str::to_string);
    Ok(NetSpec {
        address: format!("{local}/{plen}"),
        mac: mac.to_string(),
        gateway,
        pod: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordingRunner;

    fn spec() -> NetSpec {
        NetSpec {
            address: "10.77.1.10/16".into(),
            mac: "02:42:0a:4d:01:0a".into(),
            gateway: None,
            pod: None,
        }
    }

    #[test]
    fn names_fit_linux_limits_and_differ_per_host() {
        let a = ContainerLink::new("ferry-a", "redis", "br0", spec()).unwrap();
        let b = ContainerLink::new("ferry-b", "redis", "br0", spec()).unwrap();
        assert!(a.host_if.len() <= 15);
        assert_ne!(a.host_if, b.host_if);
        assert_ne!(a.netns, b.netns);
        assert_eq!(a.netns.name, "ferry-a-redis");
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let mut s = spec();
        s.address = "10.77.1.10".into();
        assert!(ContainerLink::new("a", "x", "br0", s)
            .unwrap_err()
            .to_string()
            .contains("prefix"));
        let mut s = spec();
        s.mac = "01:00:5e:00:00:01".into();
        assert!(ContainerLink::new("a", "x", "br0", s).is_err());
        assert!(ContainerLink::new("a", "bad name!", "br0", spec()).is_err());
    }

    #[tokio::test]
    async fn create_leaves_the_host_end_down_and_attaches_it() {
        let l = ContainerLink::new("ferry-a", "redis", "br0", spec()).unwrap();
        let r = RecordingRunner::default();
        l.create(&r).await.unwrap();
        let seen: Vec<String> = r.seen.lock().unwrap().iter().map(Cmd::display).collect();
        assert_eq!(seen[0], "ip netns add ferry-a-redis");
        assert!(seen
            .iter()
            .any(|c| c.contains("addr add 10.77.1.10/16 dev eth0")));
        assert!(seen.iter().any(|c| c.ends_with("master br0")));
        assert!(!seen
            .iter()
            .any(|c| c == &format!("ip link set {} up", l.host_if)));
    }

    #[test]
    fn inspect_reads_ip_json() {
        let addr = r#"[{"ifname":"eth0","address":"02:42:0a:4d:01:0a","addr_info":[{"family":"inet","local":"10.77.1.10","prefixlen":16},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let route = r#"[{"dst":"default","gateway":"10.77.0.254","dev":"eth0"}]"#;
        let s = parse_inspect(addr, route).unwrap();
        assert_eq!(s.address, "10.77.1.10/16");
        assert_eq!(s.mac, "02:42:0a:4d:01:0a");
        assert_eq!(s.gateway.as_deref(), Some("10.77.0.254"));
        assert!(parse_inspect("[]", "[]").is_err());
    }
}

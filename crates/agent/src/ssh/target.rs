//! `ssh://[USER@]HOST[:PORT]`: where a daemonless migration goes.

use super::SshError;

/// A host reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// The scheme of daemonless destinations.
pub const SCHEME: &str = "ssh://";

impl SshTarget {
    /// Whether `to` names an SSH destination (whether or not it is a valid one).
    pub fn is_ssh(to: &str) -> bool {
        to.starts_with(SCHEME)
    }

    /// `ssh://[USER@]HOST[:PORT]`; IPv6 addresses in brackets (`ssh://[fd00::2]:22`).
    pub fn parse(to: &str) -> Result<Self, SshError> {
        let bad = |why: &str| SshError::BadTarget {
            to: to.to_string(),
            why: why.to_string(),
        };
        let rest = to
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with ssh://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("it has a path; give only [USER@]HOST[:PORT]"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if let Some(u) = user {
            if !valid_word(u) {
                return Err(bad(
                    "its user name is empty or has characters ssh does not take",
                ));
            }
        }
        let (host, port) =
            split_port(hostport).ok_or_else(|| bad("its port is not a number from 1 to 65535"))?;
        if host.is_empty() || !(valid_word(host) || host.parse::<std::net::Ipv6Addr>().is_ok()) {
            return Err(bad("it names no host"));
        }
        Ok(Self {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        })
    }

    /// The arguments that select this host on ssh's command line (after its options).
    pub fn ssh_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = self.port {
            v.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            v.extend(["-l".to_string(), u.clone()]);
        }
        // `--` so that a host name can never be read as an option.
        v.extend(["--".to_string(), self.host.clone()]);
        v
    }
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SCHEME)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// Letters, digits and `.-_`, not starting with `-`.
fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`; `None` when the port is bad.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(port(p)?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, Some(port(p)?))),
        None => Some((s, None)),
    }
}

fn port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_user_port_and_brackets() {
        let t = SshTarget::parse("ssh://root@b").unwrap();
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.host, "b");
        assert_eq!(t.port, None);
        assert_eq!(t.ssh_args(), ["-l", "root", "--", "b"]);
        let t = SshTarget::parse("ssh://10.0.0.2:2222/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.2", Some(2222)));
        assert_eq!(t.to_string(), "ssh://10.0.0.2:2222");
        let t = SshTarget::parse("ssh://[fd00::2]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("fd00::2", Some(22)));
        assert_eq!(t.to_string(), "ssh://[fd00::2]:22");
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (to, says) in [
            ("ssh://", "no host"),
            ("ssh://root@", "no host"),
            ("ssh://@b", "user name"),
            ("ssh://b:0", "port"),
            ("ssh://b:http", "port"),
            ("ssh://b/tmp", "path"),
            ("ssh://-oProxyCommand=x", "no host"),
            ("b", "ssh://"),
        ] {
            let e = SshTarget::parse(to).unwrap_err().to_string();
            assert!(e.contains(says), "{to}: {e}");
        }
        assert!(SshTarget::is_ssh("ssh://b"));
        assert!(!SshTarget::is_ssh("b"));
    }
}

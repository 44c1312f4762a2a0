//! Network locks: firewall rules that drop every packet of a container's namespace.
//!
//! While a container is checkpointed, moved and restored, its TCP peers must see neither
//! a reset nor an acknowledgement of data the image does not hold. ferry keeps its own
//! lock on the source from the freeze until the container is gone or resumed, and on the
//! destination from before restore until the source commits. On the destination it also
//! installs the lock CRIU expects to remove when it finishes restoring sockets.

use std::path::PathBuf;

use crate::held::{GROUP_IN, GROUP_OUT};
use crate::{Cmd, NetError, Runner};

/// Packets CRIU sends itself carry this mark and pass every lock.
pub const CRIU_MARK: u32 = 0xC114;

/// Which rules a lock is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKind {
    /// An `inet` nftables table with dropping input and output chains: what CRIU
    /// installs, and removes at the end of a restore.
    Nft { table: String },
    /// ferry's hold lock: the same, plus an `arp` table that drops ARP both ways, so a
    /// copy that is not committed yet never answers for the address (gratuitous ARP
    /// that ferry sends through a packet socket still goes out).
    Hold,
}

/// A lock on one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetLock {
    pub netns: PathBuf,
    pub kind: LockKind,
}

/// The name of ferry's own lock table.
pub const FERRY_HOLD_TABLE: &str = "ferry-hold";

impl NetLock {
    /// ferry's own lock, independent of CRIU's.
    pub fn ferry_hold(netns: PathBuf) -> Self {
        Self {
            netns,
            kind: LockKind::Hold,
        }
    }

    /// The nftables lock CRIU's restore removes (`CRIU-<dump run id>`).
    pub fn criu_nft(netns: PathBuf, table: &str) -> Result<Self, NetError> {
        if !table.starts_with("CRIU-")
            || table.len() > 31
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(NetError::Invalid(format!(
                "'{table}' is not a CRIU lock table name"
            )));
        }
        Ok(Self {
            netns,
            kind: LockKind::Nft {
                table: table.to_string(),
            },
        })
    }

    fn table(&self) -> &str {
        match &self.kind {
            LockKind::Nft { table } => table,
            LockKind::Hold => FERRY_HOLD_TABLE,
        }
    }

    /// The `(family, table)` pairs this lock is made of.
    fn tables(&self) -> Vec<(&'static str, &str)> {
        match &self.kind {
            LockKind::Nft { table } => vec![("inet", table.as_str())],
            LockKind::Hold => vec![("inet", FERRY_HOLD_TABLE), ("arp", FERRY_HOLD_TABLE)],
        }
    }

    pub fn plan_install(&self) -> Cmd {
        let mut script = String::new();
        for (family, t) in self.tables() {
            let mark = if family == "inet" {
                format!(" meta mark {CRIU_MARK:#x} accept;")
            } else {
                String::new()
            };
            script.push_str(&format!("table {family} {t} {{\n"));
            for (chain, group) in [("input", GROUP_IN), ("output", GROUP_OUT)] {
                // ferry's hold lock keeps a copy of each TCP packet it drops (held.rs).
                let log = if family == "inet" && self.kind == LockKind::Hold {
                    format!(
                        " meta nfproto ipv4 meta l4proto tcp log group {group} snaplen 65535 queue-threshold 1;"
                    )
                } else {
                    String::new()
                };
                script.push_str(&format!(
                    "\tchain {chain} {{ type filter hook {chain} priority -10; policy drop;{mark}{log} }}\n"
                ));
            }
            script.push_str("}\n");
        }
        Cmd::new("nft", &["-f", "-"])
            .with_stdin(script)
            .in_netns(self.netns.clone())
    }

    pub fn plan_remove(&self) -> Cmd {
        let script: String = self
            .tables()
            .iter()
            .map(|(family, t)| format!("delete table {family} {t}\n"))
            .collect();
        Cmd::new("nft", &["-f", "-"])
            .with_stdin(script)
            .in_netns(self.netns.clone())
    }

    pub async fn install(&self, runner: &impl Runner) -> Result<(), NetError> {
        runner.run(&self.plan_install()).await.map(drop)
    }

    /// Removes the lock; parts already gone are fine.
    pub async fn remove(&self, runner: &impl Runner) -> Result<(), NetError> {
        match runner.run(&self.plan_remove()).await {
            Ok(_) => Ok(()),
            Err(NetError::Failed { stderr, .. }) if stderr.contains("No such file") => {
                // One of the tables is gone; remove the others one by one.
                for (family, t) in self.tables() {
                    let c = Cmd::new("nft", &["delete", "table", family, t])
                        .in_netns(self.netns.clone());
                    match runner.run(&c).await {
                        Ok(_) => {}
                        Err(NetError::Failed { stderr, .. }) if stderr.contains("No such file") => {
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the lock's table is present.
    pub async fn is_installed(&self, runner: &impl Runner) -> Result<bool, NetError> {
        let out = runner
            .run(&Cmd::new("nft", &["list", "tables"]).in_netns(self.netns.clone()))
            .await?;
        Ok(out
            .lines()
            .any(|l| l.trim() == format!("table inet {}", self.table())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_lock_drops_ip_and_arp_both_ways_but_lets_criu_through() {
        let l = NetLock::ferry_hold("/run/netns/x".into());
        let c = l.plan_install();
        let script = c.stdin.unwrap();
        assert!(
            script.contains("table inet ferry-hold") && script.contains("table arp ferry-hold")
        );
        assert!(script.contains("hook input") && script.contains("hook output"));
        assert_eq!(script.matches("policy drop").count(), 4);
        assert!(script.contains("meta mark 0xc114 accept"));
        assert!(script.contains("tcp log group 17920 snaplen 65535 queue-threshold 1"));
        assert!(script.contains("tcp log group 17921 snaplen 65535 queue-threshold 1"));
        assert_eq!(c.netns.unwrap(), PathBuf::from("/run/netns/x"));
        let r = l.plan_remove().stdin.unwrap();
        assert!(
            r.contains("delete table inet ferry-hold") && r.contains("delete table arp ferry-hold")
        );
    }

    #[test]
    fn criu_lock_is_ip_only() {
        let l = NetLock::criu_nft("/n".into(), "CRIU-7bddd2f7").unwrap();
        let s = l.plan_install().stdin.unwrap();
        assert!(s.contains("table inet CRIU-7bddd2f7") && !s.contains("arp"));
        assert!(!s.contains("log group"), "CRIU's lock keeps no copies");
    }

    #[test]
    fn criu_table_names_are_checked() {
        assert!(NetLock::criu_nft("/n".into(), "CRIU-7bddd2f7-ce0d-4e45-a5").is_ok());
        assert!(NetLock::criu_nft("/n".into(), "CRIU-x; flush ruleset").is_err());
        assert!(NetLock::criu_nft("/n".into(), "other").is_err());
    }
}

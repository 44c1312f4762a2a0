//! What a lab is made of, persisted under `/run/ferry/lab/<name>/lab.json`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::LabError;

/// Where labs keep their state.
pub const LAB_ROOT: &str = "/run/ferry/lab";

pub fn lab_dir(name: &str) -> PathBuf {
    PathBuf::from(LAB_ROOT).join(name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub control: PathBuf,
    pub agent_pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub fabric: String,
    pub client_netns: String,
    pub client_address: Ipv4Addr,
    pub hosts: Vec<LabHost>,
    pub secret: PathBuf,
    /// The lab's CA and its hosts' certificates (`<host>.pem`, `<host>-key.pem`).
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub delay_ms: f64,
    pub next_ip: u32,
}

impl LabState {
    pub fn path(name: &str) -> PathBuf {
        lab_dir(name).join("lab.json")
    }

    pub fn load(name: &str) -> Result<Self, LabError> {
        let text =
            std::fs::read(Self::path(name)).map_err(|_| LabError::NotUp(name.to_string()))?;
        serde_json::from_slice(&text)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", Self::path(name).display())))
    }

    pub fn save(&self) -> Result<(), LabError> {
        let p = Self::path(&self.name);
        std::fs::write(&p, serde_json::to_vec_pretty(self).unwrap_or_default())
            .map_err(|e| LabError::io(p.display().to_string(), e))
    }

    pub fn host(&self, name: &str) -> Result<&LabHost, LabError> {
        self.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            LabError::NoHost(
                name.to_string(),
                self.hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
    }

    /// The network namespace of a host or of `client`.
    pub fn netns_of(&self, name: &str) -> Result<String, LabError> {
        if name == "client" {
            return Ok(self.client_netns.clone());
        }
        Ok(self.host(name)?.netns.clone())
    }

    /// The next free container address (10.77.1.10 upwards).
    pub fn allocate_ip(&mut self) -> Result<Ipv4Addr, LabError> {
        let n = self.next_ip;
        if n >= 240 * 200 {
            return Err(LabError::Invalid(
                "the lab ran out of container addresses".into(),
            ));
        }
        self.next_ip += 1;
        Ok(Ipv4Addr::new(
            10,
            77,
            1 + (n / 240) as u8,
            10 + (n % 240) as u8,
        ))
    }
}

//! Finding CRIU and probing what it and the kernel can do.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use thiserror::Error;

/// The oldest CRIU ferry works with: 4.1 cannot dump TCP sockets on kernels >= 6.16,
/// and 3.x fails on modern vDSO layouts.
pub const MIN_VERSION: Version = Version {
    major: 4,
    minor: 2,
    patch: 0,
};

/// Where ferry looks for CRIU when `FERRY_CRIU` is not set. The locally built one comes
/// first: an old distribution CRIU may sit in /usr/sbin.
pub const SEARCH_PATHS: &[&str] = &[
    "/usr/local/sbin/criu",
    "/usr/local/bin/criu",
    "/usr/sbin/criu",
    "/usr/bin/criu",
];

/// A sysctl value that CRIU's lazy pages need when root lacks `CAP_SYS_RESOURCE`.
pub const PIPE_MAX_SIZE_NEEDED: u64 = 4 << 20;
const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    /// Parses `criu --version` output (`Version: 4.2.1` on its first line).
    pub fn parse_output(out: &str) -> Option<Self> {
        let line = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))?;
        Self::parse(line.trim())
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(['.', '-']).map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next().and_then(|r| r.ok()).unwrap_or(0);
        let patch = it.next().and_then(|r| r.ok()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

#[derive(Debug, Error)]
pub enum FeatureError {
    #[error("CRIU was not found (looked at FERRY_CRIU and {0}); install it with scripts/install-deps.sh")]
    NotFound(String),
    #[error("CRIU at {path} is version {found}, but ferry needs {MIN_VERSION} or newer; install it with scripts/install-deps.sh")]
    TooOld { path: PathBuf, found: Version },
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} printed no version")]
    NoVersion { path: PathBuf },
    #[error("cannot set fs.pipe-max-size to {want}: {source}")]
    Sysctl {
        want: u64,
        #[source]
        source: std::io::Error,
    },
}

/// A CRIU binary of a known version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriuBinary {
    pub path: PathBuf,
    pub version: Version,
}

impl CriuBinary {
    /// Finds CRIU: `explicit`, else `FERRY_CRIU`, else the first of [`SEARCH_PATHS`] that
    /// runs and is new enough, else the first that runs at all (so the error can say
    /// which old version was found).
    pub fn locate(explicit: Option<&Path>) -> Result<Self, FeatureError> {
        if let Some(p) = explicit {
            return Self::probe(p)?.require_min();
        }
        if let Some(p) = std::env::var_os("FERRY_CRIU") {
            return Self::probe(Path::new(&p))?.require_min();
        }
        let mut too_old = None;
        for p in SEARCH_PATHS {
            let path = Path::new(p);
            if !path.exists() {
                continue;
            }
            match Self::probe(path) {
                Ok(b) if b.version >= MIN_VERSION => return Ok(b),
                Ok(b) => {
                    too_old.get_or_insert(b);
                }
                Err(_) => continue,
            }
        }
        match too_old {
            Some(b) => b.require_min(),
            None => Err(FeatureError::NotFound(SEARCH_PATHS.join(", "))),
        }
    }

    /// Runs `criu --version`.
    pub fn probe(path: &Path) -> Result<Self, FeatureError> {
        let out = Command::new(path)
            .arg("--version")
            .output()
            .map_err(|source| FeatureError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = Version::parse_output(&text).ok_or_else(|| FeatureError::NoVersion {
            path: path.to_path_buf(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            version,
        })
    }

    fn require_min(self) -> Result<Self, FeatureError> {
        if self.version < MIN_VERSION {
            return Err(FeatureError::TooOld {
                path: self.path,
                found: self.version,
            });
        }
        Ok(self)
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureProbe {
    pub ok: bool,
    /// Why not, when `ok` is false; the command's own last line when it says so.
    pub detail: Option<String>,
}

impl FeatureProbe {
    pub fn yes() -> Self {
        Self {
            ok: true,
            detail: None,
        }
    }
    pub fn no(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: Some(detail.into()),
        }
    }
}

impl CriuBinary {
    /// `criu check --feature NAME`.
    pub fn check_feature(&self, name: &str) -> FeatureProbe {
        self.run_check(&["check", "--feature", name])
    }

    /// Plain `criu check`: the kernel features every dump needs.
    pub fn check_basic(&self) -> FeatureProbe {
        self.run_check(&["check"])
    }

    fn run_check(&self, args: &[&str]) -> FeatureProbe {
        match Command::new(&self.path).args(args).output() {
            Ok(out) if out.status.success() => FeatureProbe::yes(),
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let last = text
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or("no output")
                    .to_string();
                FeatureProbe::no(last)
            }
            Err(e) => FeatureProbe::no(format!("cannot run {}: {e}", self.path.display())),
        }
    }
}

/// The current `fs.pipe-max-size`.
pub fn pipe_max_size() -> Option<u64> {
    std::fs::read_to_string(PIPE_MAX_SIZE)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Where the CRIU that ferry builds keeps its kernel-facts cache (`criu.kdat`): CRIU keeps
/// it only on a tmpfs, so that a reboot clears it. ferry's agent mounts one there when
/// needed (`scripts/install-deps.sh` builds CRIU with this directory).
pub const KDAT_DIR: &str = "/run/ferry/criu";

/// Raises `fs.pipe-max-size` to what lazy pages need, if it is lower. Returns whether it
/// changed anything.
pub fn ensure_pipe_max_size() -> Result<bool, FeatureError> {
    if pipe_max_size().unwrap_or(0) >= PIPE_MAX_SIZE_NEEDED {
        return Ok(false);
    }
    std::fs::write(PIPE_MAX_SIZE, PIPE_MAX_SIZE_NEEDED.to_string()).map_err(|source| {
        FeatureError::Sysctl {
            want: PIPE_MAX_SIZE_NEEDED,
            source,
        }
    })?;
    Ok(true)
}

/// The network lock this host can give CRIU: nftables when its `nft` tool is installed
/// (CRIU removes that lock faster at restore), else iptables.
pub fn host_network_lock() -> crate::plan::NetworkLock {
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    match nft {
        true => crate::plan::NetworkLock::Nftables,
        false => crate::plan::NetworkLock::Iptables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criu_version_output() {
        let v = Version::parse_output("Version: 4.2.1\nGitID: v4.2.1\n").unwrap();
        assert_eq!(
            v,
            Version {
                major: 4,
                minor: 2,
                patch: 1
            }
        );
        assert!(v >= MIN_VERSION);
        assert!(Version::parse("3.17.1").unwrap() < MIN_VERSION);
        assert!(Version::parse("4.1").unwrap() < MIN_VERSION);
        assert_eq!(Version::parse_output("nothing here"), None);
    }

    #[test]
    fn a_binary_that_prints_no_version_is_refused() {
        let err = CriuBinary::probe(Path::new("/bin/true")).unwrap_err();
        assert!(matches!(err, FeatureError::NoVersion { .. }));
    }

    #[test]
    fn failing_check_reports_the_last_line() {
        let fake = CriuBinary {
            path: "/bin/false".into(),
            version: Version {
                major: 4,
                minor: 2,
                patch: 1,
            },
        };
        let p = fake.check_feature("mem_dirty_track");
        assert!(!p.ok);
    }
}

//! What a destination agent agrees to restore: the restore policy, checked against a
//! peer's `config.json` before its root file system is unpacked and before runc sees it
//! (docs/security.md).
//!
//! A policy file has one rule per line (`#` starts a comment):
//!
//! ```text
//! hooks allow                 # OCI hooks (runc runs them on this host); refused by default
//! host-mount /usr ro          # bind mounts of /usr or below, read-only ones only
//! host-mount /srv/data        # bind mounts of /srv/data or below, read-write too
//! capability CAP_NET_ADMIN    # a capability beyond the default set
//! namespace-path ipc          # joining an existing namespace of this type by path
//! devices allow               # device rules that open every device
//! ```
//!
//! Without a file, the default policy applies: no hooks, no host mounts, the 14
//! capabilities container engines grant by default, private pid, mount, ipc and uts
//! namespaces, and `root.path` a relative path inside the bundle.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

/// The capabilities a container gets by default from Docker, Podman and containerd.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Namespaces a restored container must have of its own.
const PRIVATE_NAMESPACES: [&str; 4] = ["pid", "mount", "ipc", "uts"];

/// One rule, and the line of the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<T> {
    rule: T,
    line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostMount {
    path: PathBuf,
    read_only: bool,
}

/// A destination's restore policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePolicy {
    /// The file it was read from; none for the default policy.
    source: Option<PathBuf>,
    hooks: Option<usize>,
    devices: Option<usize>,
    mounts: Vec<Line<HostMount>>,
    capabilities: Vec<Line<String>>,
    namespace_paths: Vec<Line<String>>,
}

/// A policy file that cannot be used.
#[derive(Debug, Error)]
pub enum PolicyFileError {
    #[error("restore policy {path}: cannot read it")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("restore policy {path}, line {line}: {detail}")]
    Line {
        path: PathBuf,
        line: usize,
        detail: String,
    },
}

/// A `config.json` the policy refuses: the field at fault, and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the restore policy refuses this container: {field} {reason}")]
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

impl RestorePolicy {
    /// The policy of `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyFileError> {
        let mut p = RestorePolicy {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let words: Vec<&str> = raw
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let bad = |detail: String| PolicyFileError::Line {
                path: path.to_path_buf(),
                line,
                detail,
            };
            match words.as_slice() {
                [] => {}
                ["hooks", "allow"] => p.hooks = Some(line),
                ["devices", "allow"] => p.devices = Some(line),
                ["host-mount", dir, rest @ ..] => {
                    let read_only = match rest {
                        [] => false,
                        ["ro"] => true,
                        _ => return Err(bad("write 'host-mount PATH' or 'host-mount PATH ro'".into())),
                    };
                    let path = PathBuf::from(dir);
                    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                        return Err(bad(format!("'{dir}' is not an absolute path without '..'")));
                    }
                    p.mounts.push(Line {
                        rule: HostMount { path, read_only },
                        line,
                    });
                }
                ["capability", cap] if cap.starts_with("CAP_") => p.capabilities.push(Line {
                    rule: cap.to_string(),
                    line,
                }),
                ["namespace-path", kind] => p.namespace_paths.push(Line {
                    rule: kind.to_string(),
                    line,
                }),
                _ => {
                    return Err(bad(format!(
                        "'{}' is not a rule: use hooks allow, devices allow, host-mount PATH [ro], capability CAP_NAME or namespace-path TYPE",
                        raw.trim()
                    )))
                }
            }
        }
        Ok(p)
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyFileError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(path, &text)
    }

    /// Where the policy comes from, for a refusal.
    fn origin(&self) -> String {
        match &self.source {
            Some(p) => format!("restore policy {}", p.display()),
            None => "default restore policy (no --restore-policy)".into(),
        }
    }

    /// How to allow what was refused.
    fn hint(&self, rule: &str) -> String {
        format!(
            "the {} has no '{rule}' line; add one to a --restore-policy file to allow it",
            self.origin()
        )
    }

    /// Checks a container's `config.json`.
    pub fn check(&self, config: &Value) -> Result<(), Refusal> {
        self.check_root(config)
            .and_then(|()| self.check_spec(config, &[]))
            .map_err(|r| Refusal {
                field: format!("config.json {}", r.field),
                reason: r.reason,
            })
    }

    /// Checks an OCI spec that an engine will run from a root of its own choosing (its
    /// `root.path` is not checked), named `what` in a refusal. Bind mounts from under
    /// `own`, the engine's own storage on this host, are the engine's.
    pub fn check_engine_spec(
        &self,
        what: &str,
        spec: &Value,
        own: &[&Path],
    ) -> Result<(), Refusal> {
        self.check_spec(spec, own).map_err(|r| Refusal {
            field: format!("{what} {}", r.field),
            reason: r.reason,
        })
    }

    fn check_spec(&self, spec: &Value, own: &[&Path]) -> Result<(), Refusal> {
        self.check_hooks(spec)?;
        self.check_mounts(spec, own)?;
        self.check_capabilities(spec)?;
        self.check_namespaces(spec)?;
        self.check_devices(spec)
    }

    fn check_root(&self, config: &Value) -> Result<(), Refusal> {
        let root = config.pointer("/root/path").and_then(Value::as_str);
        let root = root.unwrap_or("rootfs");
        let p = Path::new(root);
        let inside = !p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            && p.components().any(|c| matches!(c, Component::Normal(_)));
        match inside {
            true => Ok(()),
            false => Err(Refusal {
                field: "root.path".into(),
                reason: format!(
                    "is '{root}', and a restored container's root must be a relative path inside its bundle"
                ),
            }),
        }
    }

    fn check_hooks(&self, config: &Value) -> Result<(), Refusal> {
        let Some(hooks) = config.get("hooks").and_then(Value::as_object) else {
            return Ok(());
        };
        let set = hooks
            .iter()
            .find(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()));
        match (set, self.hooks) {
            (None, _) | (_, Some(_)) => Ok(()),
            (Some((kind, _)), None) => Err(Refusal {
                field: format!("hooks.{kind}"),
                reason: format!(
                    "is set, and runc would run it on this host; {}",
                    self.hint("hooks allow")
                ),
            }),
        }
    }

    fn check_mounts(&self, config: &Value, own: &[&Path]) -> Result<(), Refusal> {
        let Some(mounts) = config.get("mounts").and_then(Value::as_array) else {
            return Ok(());
        };
        for (i, m) in mounts.iter().enumerate() {
            if !crate::bundle::is_bind(m) {
                continue;
            }
            let source = m.get("source").and_then(Value::as_str).unwrap_or_default();
            let engines = Path::new(source);
            let plain = engines
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::RootDir));
            if plain && own.iter().any(|o| engines.starts_with(o)) {
                continue;
            }
            let read_only = m
                .get("options")
                .and_then(Value::as_array)
                .is_some_and(|o| o.iter().any(|x| x.as_str() == Some("ro")));
            self.host_mount(&format!("mounts[{i}].source"), source, read_only)?;
        }
        Ok(())
    }

    /// Whether a bind mount of the host's `source` (named `field` in a refusal) is
    /// allowed.
    pub fn host_mount(&self, field: &str, source: &str, read_only: bool) -> Result<(), Refusal> {
        let field = field.to_string();
        let p = Path::new(source);
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(Refusal {
                field,
                reason: format!("is '{source}', not an absolute host path without '..'"),
            });
        }
        let covering: Vec<&Line<HostMount>> = self
            .mounts
            .iter()
            .filter(|l| p.starts_with(&l.rule.path))
            .collect();
        if covering.iter().any(|l| read_only || !l.rule.read_only) {
            return Ok(());
        }
        let reason = match covering.first() {
            Some(l) => format!(
                "bind-mounts the host's {source} read-write, and line {} of the {} ('host-mount {} ro') allows it read-only only",
                l.line,
                self.origin(),
                l.rule.path.display()
            ),
            None => format!(
                "bind-mounts the host's {source}; {}",
                self.hint(&format!("host-mount {source}"))
            ),
        };
        Err(Refusal { field, reason })
    }

    fn check_capabilities(&self, config: &Value) -> Result<(), Refusal> {
        let Some(caps) = config
            .pointer("/process/capabilities")
            .and_then(Value::as_object)
        else {
            return Ok(());
        };
        for (set, list) in caps {
            for cap in list.as_array().into_iter().flatten() {
                let cap = cap.as_str().unwrap_or_default();
                self.capability(&format!("process.capabilities.{set}"), cap)?;
            }
        }
        Ok(())
    }

    /// Whether the capability `cap` (`CAP_NAME`, named `field` in a refusal) is allowed.
    pub fn capability(&self, field: &str, cap: &str) -> Result<(), Refusal> {
        let allowed =
            DEFAULT_CAPABILITIES.contains(&cap) || self.capabilities.iter().any(|l| l.rule == cap);
        match allowed {
            true => Ok(()),
            false => Err(Refusal {
                field: field.to_string(),
                reason: format!(
                    "holds {cap}, beyond the default set; {}",
                    self.hint(&format!("capability {cap}"))
                ),
            }),
        }
    }

    /// Whether joining an existing namespace of type `kind` of this host is allowed.
    pub fn namespace_join(&self, field: &str, kind: &str) -> Result<(), Refusal> {
        match self.namespace_paths.iter().any(|l| l.rule == kind) {
            true => Ok(()),
            false => Err(Refusal {
                field: field.to_string(),
                reason: format!(
                    "joins an existing {kind} namespace of this host; {}",
                    self.hint(&format!("namespace-path {kind}"))
                ),
            }),
        }
    }

    /// Whether device rules that open every device (or devices of the host) are allowed.
    pub fn devices(&self, field: &str) -> Result<(), Refusal> {
        match self.devices {
            Some(_) => Ok(()),
            None => Err(Refusal {
                field: field.to_string(),
                reason: format!(
                    "opens devices of this host to the container; {}",
                    self.hint("devices allow")
                ),
            }),
        }
    }

    fn check_namespaces(&self, config: &Value) -> Result<(), Refusal> {
        let list = config
            .pointer("/linux/namespaces")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let kind = |n: &Value| {
            n.get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for want in PRIVATE_NAMESPACES {
            if !list.iter().any(|n| kind(n) == want) {
                return Err(Refusal {
                    field: "linux.namespaces".into(),
                    reason: format!(
                        "has no {want} namespace, so the container would share this host's"
                    ),
                });
            }
        }
        for (i, n) in list.iter().enumerate() {
            let k = kind(n);
            // ferry points the network namespace at the one it made for the container.
            if n.get("path").is_none() || k == "network" {
                continue;
            }
            self.namespace_join(&format!("linux.namespaces[{i}].path"), &k)?;
        }
        Ok(())
    }

    fn check_devices(&self, config: &Value) -> Result<(), Refusal> {
        let rules = config
            .pointer("/linux/resources/devices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, r) in rules.iter().enumerate() {
            let allow = r.get("allow").and_then(Value::as_bool) == Some(true);
            let every = matches!(r.get("type").and_then(Value::as_str), None | Some("a"))
                || r.get("major").is_none_or(Value::is_null);
            if allow && every {
                self.devices(&format!("linux.resources.devices[{i}]"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

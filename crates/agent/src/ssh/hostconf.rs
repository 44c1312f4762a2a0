//! This host's settings for ferry without an agent: the arguments `ferry agent` would
//! take, one per line, in `/etc/ferry/host.conf` (or the file `FERRY_HOST_CONF` names).
//! Both halves of a migration over SSH read it: the side that runs `ferry migrate` and
//! the side ferry starts over SSH.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::SshError;
use crate::cli::Args;

/// Where the settings are when `FERRY_HOST_CONF` does not say.
pub const DEFAULT_HOST_CONF: &str = "/etc/ferry/host.conf";

/// The environment variable that names another file.
pub const HOST_CONF_ENV: &str = "FERRY_HOST_CONF";

#[derive(Debug, Parser)]
#[command(name = "host.conf", no_binary_name = true)]
struct HostArgs {
    #[command(flatten)]
    args: Args,
}

/// The file this host's settings come from.
pub fn path() -> PathBuf {
    location().0
}

/// The file this host's settings come from, and whether it was named explicitly.
fn location() -> (PathBuf, bool) {
    match std::env::var_os(HOST_CONF_ENV) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_HOST_CONF), false),
    }
}

/// This host's agent arguments: those of its settings file, or the defaults when the
/// default file does not exist. A file named by `FERRY_HOST_CONF` must exist.
pub fn load() -> Result<Args, SshError> {
    let (path, named) = location();
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => parse(&path, ""),
        Err(e) => Err(SshError::HostConf {
            path: path.display().to_string(),
            why: format!("cannot read it: {e}"),
        }),
    }
}

/// The state directory without `--state-dir`: beside an agent's, never its own.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferry/ssh";

/// Reads `text`: one argument with its value per line (`--state-dir /var/lib/ferry-ssh`),
/// `#` starting a comment line, blank lines ignored. Without `--state-dir` and
/// `--netns-prefix`, ferry keeps out of an agent's way on the same host: its state is
/// [`DEFAULT_STATE_DIR`] and its namespaces and cgroups are `ferry-ssh-NAME`.
pub fn parse(path: &Path, text: &str) -> Result<Args, SshError> {
    let mut words = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((flag, value)) => {
                words.push(flag.to_string());
                words.push(value.trim().to_string());
            }
            None => words.push(line.to_string()),
        }
    }
    let given = |flag: &str| words.iter().any(|w| w == flag);
    let (state, prefix) = (given("--state-dir"), given("--netns-prefix"));
    let mut args = HostArgs::try_parse_from(words)
        .map(|h| h.args)
        .map_err(|e| SshError::HostConf {
            path: path.display().to_string(),
            why: first_line(&e.to_string()),
        })?;
    if !state {
        args.state_dir = PathBuf::from(DEFAULT_STATE_DIR);
    }
    if !prefix {
        let name = args.name.clone().unwrap_or_else(crate::cli::hostname);
        args.netns_prefix = Some(format!("ferry-ssh-{name}"));
    }
    Ok(args)
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_conf_gives_agent_arguments_and_says_which_line_is_wrong() {
        let p = Path::new("host.conf");
        let a = parse(
            p,
            "# the lab's host b\n--state-dir /run/x/b/ssh\n\n--name b\n--allow-fault-injection\n",
        )
        .unwrap();
        assert_eq!(a.state_dir, Path::new("/run/x/b/ssh"));
        assert_eq!(a.name.as_deref(), Some("b"));
        assert!(a.allow_fault_injection);
        let d = parse(p, "").unwrap();
        assert_eq!(d.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert!(d.netns_prefix.unwrap().starts_with("ferry-ssh-"));
        let e = parse(p, "--state-dri /x\n").unwrap_err().to_string();
        assert!(e.contains("host.conf") && e.contains("--state-dri"), "{e}");
    }
}

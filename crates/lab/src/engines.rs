//! Real container engines in the lab: each host gets its own Podman (own storage, run
//! root, runc root and network configuration) when Podman is installed, so that
//! `ferry lab exec HOST -- podman …` acts on that host alone, as on separate machines.
//! Every host has a Podman network named `lab` on its bridge, in the lab's address range,
//! so that a container started with `--network lab --ip …` is reachable from `client`
//! and can move.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::state::LabHost;
use crate::LabError;

/// The lab's network name, in every engine.
pub const NETWORK: &str = "lab";

/// The lab's address management for `--network lab`: the address the container asks
/// for (`--ip`), in the lab's `/16`, and nothing kept. The hosts share this machine's
/// CNI cache, keyed by container id, and a moved container keeps its id: a store of
/// addresses per host would be released by the other host's copy.
const IPAM: &str = r#"#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}'; exit 0 ;;
ADD) ;;
*) cat >/dev/null; exit 0 ;;
esac
cat >/dev/null
ip=$(echo "$CNI_ARGS" | tr ';' '\n' | sed -n 's/^IP=//p')
case "$ip" in
10.77.*.*) echo "{\"cniVersion\":\"0.4.0\",\"ips\":[{\"version\":\"4\",\"address\":\"$ip/16\"}]}" ;;
*) echo '{"cniVersion":"0.4.0","code":11,"msg":"the lab network gives a container the address it asks for: podman run --network lab --ip 10.77.3.N"}'; exit 1 ;;
esac
"#;

/// The name of that plugin.
const IPAM_PLUGIN: &str = "ferry-lab-ipam";

/// Where a host's Podman keeps everything.
pub fn podman_dir(host: &LabHost) -> PathBuf {
    host.state_dir.join("podman")
}

/// The runc root of a host's Podman containers.
pub fn podman_runc_root(host: &LabHost) -> PathBuf {
    podman_dir(host).join("runc-root")
}

/// The variables that point Podman at a host's own configuration.
pub fn podman_env(host: &LabHost) -> Vec<(String, String)> {
    let dir = podman_dir(host);
    if !dir.join("containers.conf").exists() {
        return Vec::new();
    }
    vec![
        (
            "CONTAINERS_CONF".into(),
            dir.join("containers.conf").display().to_string(),
        ),
        (
            "CONTAINERS_STORAGE_CONF".into(),
            dir.join("storage.conf").display().to_string(),
        ),
    ]
}

/// The program of that name on `PATH`, if there is one.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(path.display().to_string(), e))
}

/// Gives `host` its own Podman, if Podman is installed; returns whether it did.
pub fn setup_podman(host: &LabHost) -> Result<bool, LabError> {
    let (Some(_), Some(runc)) = (which("podman"), which("runc")) else {
        return Ok(false);
    };
    let dir = podman_dir(host);
    for d in [
        "root",
        "run",
        "tmp",
        "cni",
        "cni-plugins",
        "bin",
        "runc-root",
        "volumes",
    ] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| LabError::io(p.display().to_string(), e))?;
    }
    let d = |s: &str| dir.join(s).display().to_string();
    write(
        &dir.join("storage.conf"),
        &format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            d("root"),
            d("run")
        ),
    )?;
    let ipam = dir.join("cni-plugins").join(IPAM_PLUGIN);
    write(&ipam, IPAM)?;
    executable(&ipam)?;
    // runc under Podman keeps this host's containers in this host's own root.
    let wrapper = dir.join("bin/runc");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            runc.display(),
            d("runc-root")
        ),
    )?;
    executable(&wrapper)?;
    write(
        &dir.join("containers.conf"),
        &format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n\
             [engine]\ntmp_dir = \"{}\"\nvolume_path = \"{}\"\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{}\"\nruntime = \"runc\"\n\n\
             [engine.runtimes]\nrunc = [\"{}\"]\n\n[network]\nnetwork_backend = \"cni\"\n\
             network_config_dir = \"{}\"\ncni_plugin_dirs = [\"{}\", {}]\n",
            d("tmp"),
            d("volumes"),
            d("events.log"),
            wrapper.display(),
            d("cni"),
            d("cni-plugins"),
            CNI_PLUGIN_DIRS
        ),
    )?;
    write(
        &dir.join("cni").join(format!("{NETWORK}.conflist")),
        &conflist(),
    )?;
    Ok(true)
}

/// Where CNI's plugins are, as Podman looks for them.
const CNI_PLUGIN_DIRS: &str = r#""/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni", "/opt/cni/bin""#;

fn executable(path: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io(path.display().to_string(), e))
}

/// The `lab` network: the host's bridge, no address of its own and no NAT (the host
/// has its address on the bridge already), the address each container asks for.
fn conflist() -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "br0",
                "isGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "capabilities": { "mac": true },
                "ipam": { "type": IPAM_PLUGIN }
            }
        ]
    })
    .to_string()
}

/// Runs Podman as `host`'s, inside its network namespace.
pub fn podman(host: &LabHost, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("nsenter")
        .arg(format!(
            "--net={}",
            ferry_netns::netns_path(&host.netns).display()
        ))
        .arg("podman")
        .args(args)
        .envs(podman_env(host))
        .stdin(Stdio::null())
        .output()
}

/// Removes every Podman container of a host (`ferry lab down`).
pub fn remove_podman_containers(host: &LabHost) {
    if podman_env(host).is_empty() {
        return;
    }
    let _ = podman(host, &["rm", "--all", "--force", "--time", "0"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(command: &str, args: &str) -> (bool, String) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(IPAM)
            .env("CNI_COMMAND", command)
            .env("CNI_ARGS", args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn the_lab_address_plugin_gives_the_address_asked_for_and_nothing_else() {
        let (ok, out) = ipam("ADD", "IgnoreUnknown=1;K8S_POD_NAME=r;IP=10.77.3.41");
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ips"][0]["address"], "10.77.3.41/16");
        let (ok, out) = ipam("ADD", "IgnoreUnknown=1;K8S_POD_NAME=r");
        assert!(!ok);
        assert!(out.contains("--ip 10.77.3.N"), "{out}");
        let (ok, _) = ipam("ADD", "IP=192.168.1.1");
        assert!(!ok, "outside the lab's range");
        assert!(ipam("DEL", "IP=10.77.3.41").0);
        let (ok, out) = ipam("VERSION", "");
        assert!(ok && out.contains("0.4.0"), "{out}");
    }

    #[test]
    fn the_lab_network_is_the_host_bridge_without_nat_and_keeps_macs() {
        let v: serde_json::Value = serde_json::from_str(&conflist()).unwrap();
        let bridge = &v["plugins"][0];
        assert_eq!(v["name"], NETWORK);
        assert_eq!(bridge["bridge"], "br0");
        assert_eq!(bridge["isGateway"], false);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["capabilities"]["mac"], true);
        assert_eq!(bridge["ipam"]["type"], IPAM_PLUGIN);
    }
}

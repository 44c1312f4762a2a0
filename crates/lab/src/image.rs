//! Images for the lab's engines without a registry: a root file system made of this
//! machine's programs and the libraries they load, as a tarball that `podman import`
//! takes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::state::{LabHost, LabState};
use crate::LabError;

/// The libraries `program` loads, as `ldd` names them.
fn libraries(program: &Path) -> Result<Vec<PathBuf>, LabError> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| LabError::io("ldd", e))?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// The absolute paths of an `ldd` listing.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_in(root: &Path, file: &Path) -> Result<(), LabError> {
    let to = root.join(file.strip_prefix("/").unwrap_or(file));
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir.display().to_string(), e))?;
    }
    std::fs::copy(file, &to).map_err(|e| LabError::io(file.display().to_string(), e))?;
    Ok(())
}

/// Builds the root file system of `programs` in `work` and packs it into a tarball;
/// returns its path.
pub fn tarball(work: &Path, programs: &[PathBuf]) -> Result<PathBuf, LabError> {
    let root = work.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["etc", "tmp", "data", "root"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(|e| LabError::io(p.display().to_string(), e))?;
    }
    for p in programs {
        if !p.is_absolute() || !p.is_file() {
            return Err(LabError::Invalid(format!(
                "'{}' is not a program of this machine; give absolute paths",
                p.display()
            )));
        }
        copy_in(&root, p)?;
        for lib in libraries(p)? {
            copy_in(&root, &lib)?;
        }
    }
    let write = |name: &str, text: &str| {
        let p = root.join("etc").join(name);
        std::fs::write(&p, text).map_err(|e| LabError::io(p.display().to_string(), e))
    };
    write("passwd", "root:x:0:0:root:/root:/bin/sh\n")?;
    write("group", "root:x:0:\n")?;
    let out = work.join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(&out)
        .arg(".")
        .status()
        .map_err(|e| LabError::io("tar", e))?
        .success();
    let _ = std::fs::remove_dir_all(&root);
    if !ok {
        return Err(LabError::Invalid(
            "tar could not pack the image's files".into(),
        ));
    }
    Ok(out)
}

/// Builds an image of `programs` and imports it as `name` into the Podman of `hosts`
/// (every host when empty); returns the hosts that got it.
pub fn import_image(
    lab: &LabState,
    name: &str,
    hosts: &[String],
    programs: &[PathBuf],
) -> Result<Vec<String>, LabError> {
    let chosen: Vec<&LabHost> = match hosts.is_empty() {
        true => lab.hosts.iter().collect(),
        false => hosts
            .iter()
            .map(|h| lab.host(h))
            .collect::<Result<_, _>>()?,
    };
    let has_docker = |h: &LabHost| !crate::docker::docker_env(h).is_empty();
    if chosen
        .iter()
        .all(|h| crate::engines::podman_env(h).is_empty() && !has_docker(h))
    {
        return Err(LabError::Invalid(
            "no lab host has an engine to import into: install Podman ('bash scripts/install-deps.sh') and make the lab again".into(),
        ));
    }
    let work = crate::state::lab_dir(&lab.name).join("image-build");
    std::fs::create_dir_all(&work).map_err(|e| LabError::io(work.display().to_string(), e))?;
    let tar = crate::image::tarball(&work, programs)?;
    let mut done = Vec::new();
    let tar = tar.to_string_lossy();
    for h in chosen {
        let mut imports = Vec::new();
        if !crate::engines::podman_env(h).is_empty() {
            imports.push((
                "podman",
                crate::engines::podman(h, &["import", "--quiet", &tar, name]),
            ));
        }
        if has_docker(h) {
            imports.push(("docker", crate::docker::docker(h, &["import", &tar, name])));
        }
        for (engine, out) in imports {
            let out = out.map_err(|e| LabError::io(format!("{engine} import"), e))?;
            if !out.status.success() {
                return Err(LabError::Invalid(format!(
                    "{engine} import on host {} failed: {}",
                    h.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        done.push(h.name.clone());
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_listings_give_the_files_to_copy() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                    \tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}

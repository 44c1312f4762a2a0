//! A process's open descriptors, read once from `/proc/PID/fd`: what each link names,
//! and what `stat` says through it. The preflight's checks (io_uring, devices, pipes and
//! sockets) all look at the same table.

use std::path::Path;

/// One open descriptor.
#[derive(Debug, Clone)]
pub struct Fd {
    pub num: i32,
    /// The link's target (`socket:[N]`, `anon_inode:[io_uring]`, a path).
    pub target: String,
    /// What `stat` says of the file it names, if it could be read.
    pub meta: Option<std::fs::Metadata>,
}

/// The descriptors of `pid` (none if it is gone).
pub fn of(pid: u32) -> Vec<Fd> {
    let dir = Path::new("/proc").join(pid.to_string()).join("fd");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let num = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            let meta = std::fs::metadata(e.path()).ok();
            Some(Fd { num, target, meta })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_s_table_has_its_standard_descriptors() {
        let fds = super::of(std::process::id());
        assert!(
            fds.iter().any(|f| f.num == 0 && f.meta.is_some()),
            "{fds:?}"
        );
    }
}

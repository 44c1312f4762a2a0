//! Devices a container's processes hold open. runc gives every container the same few
//! (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`, `/dev/tty`,
//! `/dev/console`, `/dev/ptmx`, terminals under `/dev/pts`), which CRIU reopens at the
//! destination. Anything else (`/dev/kvm`, `/dev/fuse`, a GPU, a disk) carries state
//! in the kernel or hardware that CRIU cannot move, or a node the destination may lack.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::fds::Fd;

/// A device number's major and minor parts (Linux's encoding).
fn split(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Whether every container has this character device.
fn standard(major: u64, minor: u64) -> bool {
    matches!(
        (major, minor),
        (1, 3) | (1, 5) | (1, 7) | (1, 8) | (1, 9) | (5, 0) | (5, 1) | (5, 2)
    ) || (136..=143).contains(&major)
}

/// The devices among descriptors `fds` that are not a container's standard ones,
/// described.
pub fn unusual_devices(fds: &[Fd]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in fds {
        let Some(m) = &f.meta else {
            continue;
        };
        let t = m.file_type();
        if !(t.is_char_device() || t.is_block_device()) {
            continue;
        }
        let (major, minor) = split(m.rdev());
        if t.is_char_device() && standard(major, minor) {
            continue;
        }
        let name = &f.target;
        let kind = if t.is_block_device() { "block " } else { "" };
        let s = format!("{name} ({kind}device {major}:{minor})");
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_as_linux_encodes_them() {
        assert_eq!(split(0x0103), (1, 3));
        assert_eq!(split(0x88_00), (136, 0));
        // major 10, minor 232 (/dev/kvm).
        assert_eq!(split((10 << 8) | 232), (10, 232));
        // A minor above 255.
        assert_eq!(split((259 << 8) | (0x1_2300 << 12) | 0x45), (259, 0x12345));
    }

    #[test]
    fn a_container_s_own_devices_are_standard_and_others_are_not() {
        assert!(standard(1, 3) && standard(1, 9) && standard(5, 2) && standard(136, 4));
        assert!(!standard(10, 232), "/dev/kvm");
        assert!(!standard(10, 229), "/dev/fuse");
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(unusual_devices(&crate::fds::of(std::process::id())).is_empty());
        drop(null);
    }
}

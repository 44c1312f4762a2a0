//! Socket options set on ferry's connections.

/// Sets an integer socket option; best effort (an option the socket lacks is skipped).
pub(crate) fn set_int_opt(
    s: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) {
    // SAFETY: setsockopt with a pointer to one int on a socket the caller holds.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

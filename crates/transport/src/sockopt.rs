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

/// Reads an integer socket option.
pub(crate) fn get_int_opt(
    s: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `v`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            opt,
            std::ptr::addr_of_mut!(v).cast(),
            &mut len,
        )
    };
    match r {
        0 => Ok(v),
        _ => Err(std::io::Error::last_os_error()),
    }
}

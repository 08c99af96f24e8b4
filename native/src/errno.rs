//! errno numbers thinsim names, and errno -> name for error codes.
//!
//! The numbers 1..=34 (but 11) are the historic Unix set and are the same on Linux, macOS
//! and the BSDs; the rest differ between systems and are defined for Linux only (the
//! generic asm-generic set shared by x86_64 and aarch64), which is also the only OS whose
//! syscalls need them (see `chunk.rs`). Unknown numbers are named `ERRNO_<n>` so a code is
//! still stable and greppable.

pub const EINTR: i32 = 4;
pub const EIO: i32 = 5;
pub const EBADF: i32 = 9;
/// EAGAIN/EWOULDBLOCK on Linux (the number differs on other Unixes, so Linux-only use).
#[cfg(target_os = "linux")]
pub const EAGAIN: i32 = 11;
pub const EXDEV: i32 = 18;
pub const EINVAL: i32 = 22;
pub const ENOSPC: i32 = 28;

#[cfg(target_os = "linux")]
pub const ENOSYS: i32 = 38;
#[cfg(target_os = "linux")]
pub const EOPNOTSUPP: i32 = 95;

/// The classic names, equal on every Unix thinsim may be built on.
fn portable_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        EBADF => "EBADF",
        10 => "ECHILD",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        15 => "ENOTBLK",
        16 => "EBUSY",
        17 => "EEXIST",
        EXDEV => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        EINVAL => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        ENOSPC => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        33 => "EDOM",
        34 => "ERANGE",
        _ => return None,
    })
}

/// Linux's numbers past the classic set (those a file syscall can plausibly return).
#[cfg(target_os = "linux")]
fn os_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        EAGAIN => "EAGAIN",
        35 => "EDEADLK",
        36 => "ENAMETOOLONG",
        37 => "ENOLCK",
        ENOSYS => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        EOPNOTSUPP => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        116 => "ESTALE",
        121 => "EREMOTEIO",
        122 => "EDQUOT",
        125 => "ECANCELED",
        _ => return None,
    })
}

/// Elsewhere only the portable names are known; the rest get the numeric form.
#[cfg(not(target_os = "linux"))]
fn os_name(_errno: i32) -> Option<&'static str> {
    None
}

/// The conventional name of `errno` (`"EBADF"`), or `ERRNO_<n>` when unknown.
pub fn name(errno: i32) -> String {
    match portable_name(errno).or_else(|| os_name(errno)) {
        Some(n) => n.to_string(),
        None => format!("ERRNO_{errno}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_os() {
        // Ask the OS itself which errno a condition gives, rather than restating numbers.
        let e = std::fs::File::open("/nonexistent/thinsim/errno-test").unwrap_err();
        assert_eq!(name(e.raw_os_error().unwrap()), "ENOENT");
        assert_eq!(name(EIO), "EIO");
        assert_eq!(name(ENOSPC), "ENOSPC");
        assert_eq!(
            std::io::Error::from_raw_os_error(ENOSPC).kind(),
            std::io::ErrorKind::StorageFull
        );
        assert_eq!(
            std::io::Error::from_raw_os_error(EINTR).kind(),
            std::io::ErrorKind::Interrupted
        );
        assert_eq!(
            std::io::Error::from_raw_os_error(EXDEV).kind(),
            std::io::ErrorKind::CrossesDevices
        );
        assert_eq!(
            std::io::Error::from_raw_os_error(EINVAL).kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert_eq!(name(100_000), "ERRNO_100000");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_names_match_the_os() {
        assert_eq!(
            std::io::Error::from_raw_os_error(ENOSYS).kind(),
            std::io::ErrorKind::Unsupported
        );
        assert_eq!(
            std::io::Error::from_raw_os_error(EOPNOTSUPP).to_string(),
            "Operation not supported (os error 95)"
        );
        assert_eq!(name(122), "EDQUOT");
    }
}

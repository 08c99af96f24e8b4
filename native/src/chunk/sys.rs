//! The raw syscalls, and their retry/fallback loops.

use super::ChunkError;
use crate::errno::{EINTR, EIO};
use std::cell::RefCell;
use std::ffi::{c_int, c_void};

extern "C" {
    // 64-bit offsets everywhere: glibc's plain names take a 32-bit off_t on 32-bit
    // targets, so link its *64 variants; musl and the BSDs have 64-bit off_t already.
    #[cfg_attr(all(target_os = "linux", target_env = "gnu"), link_name = "pread64")]
    fn pread(fd: c_int, buf: *mut c_void, count: usize, offset: i64) -> isize;
    #[cfg_attr(all(target_os = "linux", target_env = "gnu"), link_name = "pwrite64")]
    fn pwrite(fd: c_int, buf: *const c_void, count: usize, offset: i64) -> isize;
}

/// Bounce buffer for the pread/pwrite copy (one per thread, reused: allocating per
/// call made the loop slower than plain JS).
const BOUNCE_SIZE: usize = 1 << 20;

thread_local! {
    static BOUNCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Zeros for the write-zeros path; lives in .bss so it costs no file size.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

pub fn last_errno() -> i32 {
    // An OS error always has a raw code; EIO stands in should that ever not hold.
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(EIO)
}

fn pread_retry(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, ChunkError> {
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed region of `buf.len()` bytes that
        // the kernel may write; the descriptor is only an integer to it.
        let n = unsafe { pread(fd, buf.as_mut_ptr() as *mut c_void, buf.len(), off as i64) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_errno();
        if e != EINTR {
            return Err(ChunkError::Sys {
                syscall: "pread",
                errno: e,
            });
        }
    }
}

/// Write all of `buf` at `off` (pwrite may be short on signals or quotas).
pub fn pwrite_all(fd: i32, mut buf: &[u8], mut off: u64) -> Result<(), ChunkError> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live region of `buf.len()` bytes that the kernel only reads.
        let n = unsafe { pwrite(fd, buf.as_ptr() as *const c_void, buf.len(), off as i64) };
        if n < 0 {
            let e = last_errno();
            if e == EINTR {
                continue;
            }
            return Err(ChunkError::Sys {
                syscall: "pwrite",
                errno: e,
            });
        }
        if n == 0 {
            // A zero-length write with a non-empty buffer would loop forever.
            return Err(ChunkError::Sys {
                syscall: "pwrite",
                errno: EIO,
            });
        }
        buf = &buf[n as usize..];
        off += n as u64;
    }
    Ok(())
}

/// pread/pwrite copy through the thread's bounce buffer. Stops at EOF of the source.
pub fn copy_bounce(
    fd_in: i32,
    mut off_in: u64,
    fd_out: i32,
    mut off_out: u64,
    mut len: u64,
) -> Result<u64, ChunkError> {
    BOUNCE.with(|cell| {
        let mut bounce = cell.borrow_mut();
        if bounce.is_empty() {
            bounce.resize(BOUNCE_SIZE, 0);
        }
        let mut done = 0u64;
        while len > 0 {
            let want = len.min(BOUNCE_SIZE as u64) as usize;
            let n = pread_retry(fd_in, &mut bounce[..want], off_in)?;
            if n == 0 {
                break; // EOF of the source
            }
            pwrite_all(fd_out, &bounce[..n], off_out)?;
            done += n as u64;
            off_in += n as u64;
            off_out += n as u64;
            len -= n as u64;
        }
        Ok(done)
    })
}

/// pwrite zeros over `[off, end)`.
pub fn write_zeros(fd: i32, off: u64, end: u64) -> Result<(), ChunkError> {
    let mut pos = off;
    while pos < end {
        let n = (end - pos).min(ZEROS.len() as u64) as usize;
        pwrite_all(fd, &ZEROS[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// The size of `fd` if it is a regular file (None for block devices and the like,
/// whose fstat size is 0).
pub fn regular_file_size(fd: i32) -> Result<Option<u64>, ChunkError> {
    use std::fs::File;
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    // SAFETY: the caller keeps `fd` open for the call (this module's contract), and
    // ManuallyDrop means the File never closes it: we only borrow it for one fstat.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let meta = file.metadata().map_err(|e| ChunkError::Sys {
        syscall: "fstat",
        errno: e.raw_os_error().unwrap_or(EIO),
    })?;
    Ok(meta.is_file().then_some(meta.len()))
}

#[cfg(target_os = "linux")]
pub mod linux {
    //! Linux-only fast paths.

    use std::ffi::{c_int, c_uint, c_void};

    /// struct iovec.
    #[repr(C)]
    struct IoVec {
        base: *mut c_void,
        len: usize,
    }

    extern "C" {
        #[cfg_attr(all(target_env = "gnu", target_pointer_width = "32"), link_name = "preadv64v2")]
        fn preadv2(fd: c_int, iov: *const IoVec, iovcnt: c_int, offset: i64, flags: c_int) -> isize;
        fn copy_file_range(
            fd_in: c_int,
            off_in: *mut i64,
            fd_out: c_int,
            off_out: *mut i64,
            len: usize,
            flags: c_uint,
        ) -> isize;
        #[cfg_attr(target_env = "gnu", link_name = "fallocate64")]
        fn fallocate(fd: c_int, mode: c_int, offset: i64, len: i64) -> c_int;
    }

    /// preadv2 flag: fail with EAGAIN rather than wait for I/O (Linux 4.14).
    pub const RWF_NOWAIT: c_int = 0x08;

    pub const FALLOC_FL_KEEP_SIZE: c_int = 0x01;
    pub const FALLOC_FL_PUNCH_HOLE: c_int = 0x02;
    pub const FALLOC_FL_ZERO_RANGE: c_int = 0x10;

    /// One copy_file_range call; the kernel advances both offsets by the result.
    pub fn copy_step(
        fd_in: i32,
        off_in: &mut i64,
        fd_out: i32,
        off_out: &mut i64,
        len: usize,
    ) -> isize {
        // SAFETY: both offset pointers come from live `&mut i64`s; the kernel reads and
        // updates only them and validates the descriptors itself.
        unsafe { copy_file_range(fd_in, off_in, fd_out, off_out, len, 0) }
    }

    /// One preadv2 into `buf` at `off` with `flags`: bytes read, or -1 (errno set).
    pub fn preadv2_into(fd: i32, buf: &mut [u8], off: u64, flags: c_int) -> isize {
        let iov = IoVec {
            base: buf.as_mut_ptr() as *mut c_void,
            len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, a live, exclusively borrowed region the kernel
        // may write, and outlives the call; one iovec is passed.
        unsafe { preadv2(fd, &iov, 1, off as i64, flags) }
    }

    /// One fallocate call: 0 or -1 (errno set).
    pub fn falloc(fd: i32, mode: c_int, off: u64, len: u64) -> c_int {
        // SAFETY: a syscall on plain integers; no memory is passed.
        unsafe { fallocate(fd, mode, off as i64, len as i64) }
    }
}

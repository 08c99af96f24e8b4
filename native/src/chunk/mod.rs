//! Data-chunk helpers: file-to-file copy, zeroing/punching, zero test, aligned buffers.
//!
//! Every I/O function works on raw file descriptors owned by the caller, which must stay
//! open for the duration of the call; none is closed, and file positions are not used or
//! changed. Errors carry the syscall name and errno so the JS side can report both.
//!
//! Portability: on Linux `copy_file_range` and `fallocate` do the work when the kernel and
//! filesystem can. Elsewhere on Unix the same functions take the pread/pwrite fallbacks
//! that Linux also takes when those calls are refused, so results are identical and only
//! speed differs. Off Unix there are no such descriptors: the I/O functions report
//! `ChunkError::Unsupported`. The syscalls are declared here directly (the C library is
//! linked through std; the `libc` crate is out of reach).

use std::alloc::{alloc_zeroed, dealloc, Layout};

#[cfg(target_os = "linux")]
use crate::errno::{EINTR, EINVAL, ENOSYS, EOPNOTSUPP, EXDEV};

/// A failed chunk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A syscall failed with `errno`.
    Sys { syscall: &'static str, errno: i32 },
    /// The operation does not exist on this OS (descriptor I/O off Unix).
    Unsupported { operation: &'static str },
}

/// How `zero_range` did its job (returned to JS as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroMethod {
    /// len was 0: nothing to do.
    Nothing = 0,
    /// fallocate(PUNCH_HOLE | KEEP_SIZE): blocks deallocated, size unchanged.
    Punched = 1,
    /// fallocate(ZERO_RANGE): blocks zeroed (may stay allocated); extends the file like a write.
    ZeroRange = 2,
    /// pwrite of zeros.
    WroteZeros = 3,
}

#[cfg(unix)]
mod sys;

/// Largest request handed to one copy_file_range: keeps counts well inside `isize` and
/// lets a huge copy make progress in bounded steps.
#[cfg(target_os = "linux")]
const MAX_STEP: usize = 1 << 30;

/// Whether a copy_file_range or fallocate failure means "this file (pair) cannot do it"
/// rather than a real I/O error. EINVAL covers kernels/filesystems that reject the call
/// outright.
#[cfg(target_os = "linux")]
fn unsupported_here(errno: i32) -> bool {
    matches!(errno, EXDEV | ENOSYS | EINVAL | EOPNOTSUPP)
}

/// Copy `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out`. On Linux with
/// `copy_file_range` (which can share extents on XFS/btrfs), falling back to pread/pwrite
/// when the kernel or filesystem pair cannot do it (EXDEV, ENOSYS, EINVAL, EOPNOTSUPP);
/// elsewhere on Unix with pread/pwrite.
///
/// Returns the number of bytes copied, which is less than `len` only when the source
/// ends first: bytes past the source's EOF are NOT copied and NOT zero-filled. Overlapping
/// ranges of the same file give an unspecified result.
#[cfg(target_os = "linux")]
pub fn copy_range(
    fd_in: i32,
    off_in: u64,
    fd_out: i32,
    off_out: u64,
    len: u64,
) -> Result<u64, ChunkError> {
    let (mut oin, mut oout) = (off_in as i64, off_out as i64);
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(MAX_STEP as u64) as usize;
        let n = sys::linux::copy_step(fd_in, &mut oin, fd_out, &mut oout, step);
        if n > 0 {
            done += n as u64; // the kernel advanced oin/oout by n
            continue;
        }
        if n == 0 {
            return Ok(done); // EOF of the source
        }
        let e = sys::last_errno();
        if e == EINTR {
            continue;
        }
        if unsupported_here(e) {
            return Ok(done + sys::copy_bounce(fd_in, oin as u64, fd_out, oout as u64, len - done)?);
        }
        return Err(ChunkError::Sys {
            syscall: "copy_file_range",
            errno: e,
        });
    }
    Ok(done)
}

/// See the Linux `copy_range`: here always the pread/pwrite path.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn copy_range(
    fd_in: i32,
    off_in: u64,
    fd_out: i32,
    off_out: u64,
    len: u64,
) -> Result<u64, ChunkError> {
    sys::copy_bounce(fd_in, off_in, fd_out, off_out, len)
}

#[cfg(not(unix))]
pub fn copy_range(
    _fd_in: i32,
    _off_in: u64,
    _fd_out: i32,
    _off_out: u64,
    _len: u64,
) -> Result<u64, ChunkError> {
    Err(ChunkError::Unsupported {
        operation: "copying between file descriptors",
    })
}

/// Make `[off, off+len)` of `fd` read as zeros.
///
/// `punch = true` deallocates the range (PUNCH_HOLE|KEEP_SIZE) and never changes the file
/// size; its fallback writes zeros only up to the current size of a regular file (the
/// whole range for other file types, e.g. block devices whose fstat size is 0).
/// `punch = false` uses ZERO_RANGE (no KEEP_SIZE: the file grows like a write would);
/// its fallback writes zeros over the whole range. The fallback runs when fallocate says
/// the mode is unsupported (EOPNOTSUPP, ENOSYS, EINVAL, EXDEV), and always off Linux.
#[cfg(unix)]
pub fn zero_range(fd: i32, off: u64, len: u64, punch: bool) -> Result<ZeroMethod, ChunkError> {
    if len == 0 {
        return Ok(ZeroMethod::Nothing);
    }
    #[cfg(target_os = "linux")]
    {
        use sys::linux::*;
        let mode = if punch {
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        } else {
            FALLOC_FL_ZERO_RANGE
        };
        loop {
            if falloc(fd, mode, off, len) == 0 {
                return Ok(if punch {
                    ZeroMethod::Punched
                } else {
                    ZeroMethod::ZeroRange
                });
            }
            match sys::last_errno() {
                EINTR => continue,
                e if unsupported_here(e) => break,
                e => {
                    return Err(ChunkError::Sys {
                        syscall: "fallocate",
                        errno: e,
                    })
                }
            }
        }
    }
    zero_by_writing(fd, off, len, punch)
}

#[cfg(not(unix))]
pub fn zero_range(_fd: i32, _off: u64, _len: u64, _punch: bool) -> Result<ZeroMethod, ChunkError> {
    Err(ChunkError::Unsupported {
        operation: "zeroing a range of a file descriptor",
    })
}

/// Read `buf.len()` bytes at `off` only if no I/O wait is needed: from the page cache
/// (preadv2 with RWF_NOWAIT). `Some(n)` is the number of bytes read, short only at the
/// file's end; `None` means "not without waiting" (data not cached, or a kernel or
/// filesystem that cannot tell: EAGAIN, EOPNOTSUPP, ENOSYS, EINVAL), and the caller reads the ordinary way: whatever was
/// read so far is simply read again. Other failures are errors. Off Linux, always None.
#[cfg(target_os = "linux")]
pub fn read_nowait(fd: i32, buf: &mut [u8], off: u64) -> Result<Option<usize>, ChunkError> {
    use crate::errno::EAGAIN;
    let mut done = 0usize;
    while done < buf.len() {
        let n = sys::linux::preadv2_into(fd, &mut buf[done..], off + done as u64, sys::linux::RWF_NOWAIT);
        if n > 0 {
            done += n as usize;
            continue;
        }
        if n == 0 {
            break; // end of file
        }
        match sys::last_errno() {
            EINTR => continue,
            // EINVAL: a kernel (or sandbox) that does not know RWF_NOWAIT.
            EAGAIN | EOPNOTSUPP | ENOSYS | EINVAL => return Ok(None),
            errno => {
                return Err(ChunkError::Sys {
                    syscall: "preadv2",
                    errno,
                })
            }
        }
    }
    Ok(Some(done))
}

#[cfg(not(target_os = "linux"))]
pub fn read_nowait(_fd: i32, _buf: &mut [u8], _off: u64) -> Result<Option<usize>, ChunkError> {
    Ok(None)
}

/// Copy `[0, len)` from `src` to `dst` within one file, except `[patch_off, patch_off +
/// patch.len())`, which gets `patch`: what breaking a shared chunk needs, as one call so
/// it costs one trip through the thread pool. The three ranges of `dst` are disjoint, so
/// the order of the writes does not matter. Source bytes past the source's EOF read as
/// zeros (as a sparse file's hole past its end would). Returns `len`.
#[cfg(unix)]
pub fn patch_copy(fd: i32, src: u64, dst: u64, len: u64, patch: &[u8], patch_off: u64) -> Result<u64, ChunkError> {
    let plen = patch.len() as u64;
    debug_assert!(patch_off + plen <= len);
    let after = patch_off + plen;
    for (from, to) in [(0, patch_off), (after, len)] {
        if to > from {
            let n = copy_range(fd, src + from, fd, dst + from, to - from)?;
            if n < to - from {
                sys::write_zeros(fd, dst + from + n, dst + to)?;
            }
        }
    }
    sys::pwrite_all(fd, patch, dst + patch_off)?;
    Ok(len)
}

#[cfg(not(unix))]
pub fn patch_copy(_fd: i32, _src: u64, _dst: u64, _len: u64, _patch: &[u8], _patch_off: u64) -> Result<u64, ChunkError> {
    Err(ChunkError::Unsupported {
        operation: "copying a chunk with a patch",
    })
}

/// The portable half of `zero_range`: write zeros (for a punch, not past EOF of a regular file).
#[cfg(unix)]
fn zero_by_writing(fd: i32, off: u64, len: u64, punch: bool) -> Result<ZeroMethod, ChunkError> {
    let mut end = off + len;
    if punch {
        if let Some(size) = sys::regular_file_size(fd)? {
            end = end.min(size);
        }
    }
    sys::write_zeros(fd, off, end)?;
    Ok(ZeroMethod::WroteZeros)
}

/// Whether every byte is zero. Reads 64 bytes per step as eight unaligned words and
/// branches once per step (the compiler vectorises the OR-fold).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut blocks = buf.chunks_exact(64);
    for blk in &mut blocks {
        let mut acc = 0u64;
        for w in blk.chunks_exact(8) {
            acc |= u64::from_le_bytes(w.try_into().unwrap());
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// Layout of an aligned buffer; `None` if `align` is not a power of two or the size
/// overflows. A zero size still gets one byte so the allocator sees a valid request.
pub fn aligned_layout(size: usize, align: usize) -> Option<Layout> {
    if !align.is_power_of_two() {
        return None;
    }
    Layout::from_size_align(size.max(1), align).ok()
}

/// Zeroed allocation for `layout`, or null if memory is exhausted.
///
/// # Safety
/// `layout` must come from `aligned_layout` (non-zero size). Free it with `free_aligned`
/// and the same layout.
pub unsafe fn alloc_aligned(layout: Layout) -> *mut u8 {
    // SAFETY: layout has a non-zero size (guaranteed by aligned_layout, per the contract).
    unsafe { alloc_zeroed(layout) }
}

/// # Safety
/// `ptr` must come from `alloc_aligned(layout)` and not have been freed.
pub unsafe fn free_aligned(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { dealloc(ptr, layout) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests;

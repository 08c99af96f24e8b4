//! Data-chunk helpers: file-to-file copy, zeroing/punching, zero test, aligned buffers.
//!
//! Linux only. The syscalls are declared here directly (glibc is linked through std, and
//! the `libc` crate is out of reach). Every function works on raw file descriptors owned
//! by the caller and never closes them. Errors carry the syscall name and errno so the
//! JS side can raise an `Error` with `code` = errno name.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::ffi::{c_int, c_uint, c_void};
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

extern "C" {
    fn copy_file_range(
        fd_in: c_int,
        off_in: *mut i64,
        fd_out: c_int,
        off_out: *mut i64,
        len: usize,
        flags: c_uint,
    ) -> isize;
    fn pread64(fd: c_int, buf: *mut c_void, count: usize, offset: i64) -> isize;
    fn pwrite64(fd: c_int, buf: *const c_void, count: usize, offset: i64) -> isize;
    fn fallocate64(fd: c_int, mode: c_int, offset: i64, len: i64) -> c_int;
}

const EINTR: i32 = 4;
const EXDEV: i32 = 18;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;
const EOPNOTSUPP: i32 = 95;

const FALLOC_FL_KEEP_SIZE: c_int = 0x01;
const FALLOC_FL_PUNCH_HOLE: c_int = 0x02;
const FALLOC_FL_ZERO_RANGE: c_int = 0x10;

/// Largest request handed to one syscall: keeps counts well inside `isize` and lets a huge
/// copy make progress in bounded steps.
const MAX_STEP: usize = 1 << 30;
/// Bounce buffer for the pread/pwrite fallback (one per thread, reused: allocating per
/// call made the loop slower than plain JS).
const BOUNCE_SIZE: usize = 1 << 20;

thread_local! {
    static BOUNCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Zeros for the write-zeros fallback; lives in .bss so it costs no file size.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// A failed syscall: its name and errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysError {
    pub syscall: &'static str,
    pub errno: i32,
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether a copy_file_range failure means "this pair of files cannot do it" rather than
/// a real I/O error. EINVAL covers kernels/filesystems that reject the call outright.
fn copy_unsupported(errno: i32) -> bool {
    matches!(errno, EXDEV | ENOSYS | EINVAL | EOPNOTSUPP)
}

fn pread_retry(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, SysError> {
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
        let n = unsafe { pread64(fd, buf.as_mut_ptr() as *mut c_void, buf.len(), off as i64) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_errno();
        if e != EINTR {
            return Err(SysError {
                syscall: "pread",
                errno: e,
            });
        }
    }
}

/// Write all of `buf` at `off` (pwrite may be short on signals or quotas).
fn pwrite_all(fd: i32, mut buf: &[u8], mut off: u64) -> Result<(), SysError> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable region of `buf.len()` bytes.
        let n = unsafe { pwrite64(fd, buf.as_ptr() as *const c_void, buf.len(), off as i64) };
        if n < 0 {
            let e = last_errno();
            if e == EINTR {
                continue;
            }
            return Err(SysError {
                syscall: "pwrite",
                errno: e,
            });
        }
        if n == 0 {
            // A zero-length write with a non-empty buffer would loop forever.
            return Err(SysError {
                syscall: "pwrite",
                errno: 5, /* EIO */
            });
        }
        buf = &buf[n as usize..];
        off += n as u64;
    }
    Ok(())
}

/// pread/pwrite copy through the thread's bounce buffer. Stops at EOF of the source.
fn copy_bounce(
    fd_in: i32,
    mut off_in: u64,
    fd_out: i32,
    mut off_out: u64,
    mut len: u64,
) -> Result<u64, SysError> {
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

/// Copy `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out` with
/// `copy_file_range` (which can share extents on XFS/btrfs), falling back to pread/pwrite
/// when the kernel or filesystem pair cannot do it (EXDEV, ENOSYS, EINVAL, EOPNOTSUPP).
///
/// Returns the number of bytes copied, which is less than `len` only when the source
/// ends first: bytes past the source's EOF are NOT copied and NOT zero-filled. File
/// offsets of the descriptors are not used or changed. Overlapping ranges of the same
/// file give an unspecified result.
pub fn copy_range(
    fd_in: i32,
    off_in: u64,
    fd_out: i32,
    off_out: u64,
    len: u64,
) -> Result<u64, SysError> {
    let (mut oin, mut oout) = (off_in as i64, off_out as i64);
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(MAX_STEP as u64) as usize;
        // SAFETY: the offset pointers are valid i64s owned by this frame; the kernel
        // validates the descriptors.
        let n = unsafe { copy_file_range(fd_in, &mut oin, fd_out, &mut oout, step, 0) };
        if n > 0 {
            done += n as u64; // the kernel advanced oin/oout by n
            continue;
        }
        if n == 0 {
            return Ok(done); // EOF of the source
        }
        let e = last_errno();
        if e == EINTR {
            continue;
        }
        if copy_unsupported(e) {
            return Ok(done + copy_bounce(fd_in, oin as u64, fd_out, oout as u64, len - done)?);
        }
        return Err(SysError {
            syscall: "copy_file_range",
            errno: e,
        });
    }
    Ok(done)
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

/// Make `[off, off+len)` of `fd` read as zeros.
///
/// `punch = true` deallocates the range (PUNCH_HOLE|KEEP_SIZE) and never changes the file
/// size; its fallback writes zeros only up to the current size of a regular file (the
/// whole range for other file types, e.g. block devices whose fstat size is 0).
/// `punch = false` uses ZERO_RANGE (no KEEP_SIZE: the file grows like a write would);
/// its fallback writes zeros over the whole range. Fallback happens when fallocate says
/// the mode is unsupported (EOPNOTSUPP, ENOSYS, EINVAL).
pub fn zero_range(fd: i32, off: u64, len: u64, punch: bool) -> Result<ZeroMethod, SysError> {
    if len == 0 {
        return Ok(ZeroMethod::Nothing);
    }
    let mode = if punch {
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    } else {
        FALLOC_FL_ZERO_RANGE
    };
    loop {
        // SAFETY: plain syscall on integers.
        let r = unsafe { fallocate64(fd, mode, off as i64, len as i64) };
        if r == 0 {
            return Ok(if punch {
                ZeroMethod::Punched
            } else {
                ZeroMethod::ZeroRange
            });
        }
        match last_errno() {
            EINTR => continue,
            EOPNOTSUPP | ENOSYS | EINVAL => break,
            e => {
                return Err(SysError {
                    syscall: "fallocate",
                    errno: e,
                })
            }
        }
    }
    let mut end = off + len;
    if punch {
        // SAFETY: the File is wrapped in ManuallyDrop, so the caller's descriptor is
        // borrowed for one fstat and never closed here.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let meta = file.metadata().map_err(|e| SysError {
            syscall: "fstat",
            errno: e.raw_os_error().unwrap_or(5),
        })?;
        if meta.is_file() {
            end = end.min(meta.len());
        }
    }
    let mut pos = off;
    while pos < end {
        let n = (end - pos).min(ZEROS.len() as u64) as usize;
        pwrite_all(fd, &ZEROS[..n], pos)?;
        pos += n as u64;
    }
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
    // SAFETY: layout has a non-zero size (guaranteed by aligned_layout).
    alloc_zeroed(layout)
}

/// # Safety
/// `ptr` must come from `alloc_aligned(layout)` and not have been freed.
pub unsafe fn free_aligned(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded from the caller's contract.
    dealloc(ptr, layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let mut p = std::env::temp_dir();
        p.push(format!("thinsim-native-{}-{}", std::process::id(), name));
        p
    }

    fn rw(path: &PathBuf) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 + 7) as u8).collect()
    }

    #[test]
    fn copy_range_copies_and_stops_at_eof() {
        let (pa, pb) = (temp("copy-a"), temp("copy-b"));
        let data = pattern(300_000);
        let mut a = rw(&pa);
        a.write_all(&data).unwrap();
        let b = rw(&pb);
        assert_eq!(
            copy_range(a.as_raw_fd(), 1000, b.as_raw_fd(), 10, 200_000),
            Ok(200_000)
        );
        // Past EOF of the source: short count, nothing invented.
        assert_eq!(
            copy_range(a.as_raw_fd(), 250_000, b.as_raw_fd(), 500_000, 100_000),
            Ok(50_000)
        );
        assert_eq!(
            copy_range(a.as_raw_fd(), 400_000, b.as_raw_fd(), 0, 10),
            Ok(0)
        );
        let mut out = Vec::new();
        File::open(&pb).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 550_000);
        assert_eq!(&out[10..200_010], &data[1000..201_000]);
        assert_eq!(&out[500_000..], &data[250_000..]);
        // The bounce path alone gives the same bytes.
        let pc = temp("copy-c");
        let c = rw(&pc);
        assert_eq!(
            copy_bounce(a.as_raw_fd(), 1000, c.as_raw_fd(), 10, 200_000),
            Ok(200_000)
        );
        let mut out2 = Vec::new();
        File::open(&pc).unwrap().read_to_end(&mut out2).unwrap();
        assert_eq!(&out2[10..], &data[1000..201_000]);
        for p in [pa, pb, pc] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn copy_range_reports_bad_descriptor() {
        let e = copy_range(-1, 0, 1, 0, 10).unwrap_err();
        assert_eq!(e.errno, 9);
    }

    #[test]
    fn zero_and_punch() {
        let p = temp("zero");
        let mut f = rw(&p);
        f.write_all(&vec![0xEE; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        let blocks_before = f.metadata().unwrap().blocks();
        let m = zero_range(f.as_raw_fd(), 65536, 262_144, true).unwrap();
        assert!(matches!(m, ZeroMethod::Punched | ZeroMethod::WroteZeros));
        if m == ZeroMethod::Punched {
            assert!(f.metadata().unwrap().blocks() < blocks_before);
        }
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        // Punching past EOF never grows the file, whichever method ran.
        zero_range(f.as_raw_fd(), (1 << 20) - 10, 100, true).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        let m2 = zero_range(f.as_raw_fd(), 700_000, 1000, false).unwrap();
        assert!(matches!(m2, ZeroMethod::ZeroRange | ZeroMethod::WroteZeros));
        assert_eq!(
            zero_range(f.as_raw_fd(), 0, 0, false),
            Ok(ZeroMethod::Nothing)
        );
        let mut out = Vec::new();
        File::open(&p).unwrap().read_to_end(&mut out).unwrap();
        for (i, &b) in out.iter().enumerate() {
            let zero = (65536..65536 + 262_144).contains(&i)
                || (700_000..701_000).contains(&i)
                || i >= (1 << 20) - 10;
            assert_eq!(b == 0, zero, "byte {i}");
        }
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn is_zero_finds_any_set_byte() {
        let mut v = vec![0u8; 1000];
        for start in 0..9 {
            assert!(is_zero(&v[start..]));
        }
        for i in 0..v.len() {
            v[i] = 1;
            assert!(!is_zero(&v), "{i}");
            assert!(is_zero(&v[i + 1..]));
            v[i] = 0;
        }
        assert!(is_zero(&[]));
    }

    #[test]
    fn aligned_alloc() {
        assert!(aligned_layout(10, 3).is_none());
        assert!(aligned_layout(usize::MAX, 4096).is_none());
        for align in [1usize, 8, 512, 4096, 1 << 16] {
            let l = aligned_layout(12345, align).unwrap();
            // SAFETY: layout from aligned_layout; freed right after with the same layout.
            unsafe {
                let p = alloc_aligned(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert!(std::slice::from_raw_parts(p, 12345).iter().all(|&b| b == 0));
                free_aligned(p, l);
            }
        }
    }
}

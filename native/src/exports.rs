//! The JS-facing functions: argument validation, conversion, and a call into the plain
//! Rust modules. One safe `fn(&Args<N>) -> NResult<napi_value>` per JS function; the
//! `callbacks!` table wraps each in an `extern "C"` trampoline that reads N arguments and
//! catches panics, so no panic ever unwinds into Node (that would abort the process).
//!
//! Validation mirrors `src/hot/twin.ts` argument by argument, left to right: a wrong type
//! or value is `Failure::Invalid`; a failed syscall is `Failure::Sys` (errno and syscall).
//! Which JS error each becomes is decided by the error factory src/hot registers with
//! `setErrorFactory` (see napi/error.rs).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::bitmap;
use crate::chunk::{self, ChunkError};
use crate::crc32c;
use crate::leaf;
use crate::napi::*;

impl From<ChunkError> for Failure {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::Sys { syscall, errno } => Failure::Sys { syscall, errno },
            ChunkError::Unsupported { operation } => Failure::Unsupported { operation },
        }
    }
}

/// Read the arguments and run a callback body; turn `Err` and panics into one thrown JS
/// error.
///
/// # Safety
/// `env`/`info` are the ones Node passed to the running trampoline.
unsafe fn guard<const N: usize>(
    env: napi_env,
    info: napi_callback_info,
    body: fn(&Args<N>) -> NResult<napi_value>,
) -> napi_value {
    // SAFETY: Node passed this env to the running callback (caller's contract).
    let env = unsafe { Env::from_raw(env) };
    // AssertUnwindSafe: after a panic we only build an error; no state observed by the
    // body is used again (the thread-local bounce buffer is plain bytes).
    let run = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: env and info of the running callback (caller's contract).
        let args = unsafe { Args::<N>::get(env, info) }?;
        body(&args)
    }));
    let failure = match run {
        Ok(Ok(v)) => return v,
        Ok(Err(f)) => f,
        Err(payload) => Failure::Panic(panic_message(&*payload)),
    };
    env.throw(&failure);
    ptr::null_mut()
}

/// Build the export table: JS name => body / number of arguments, each behind its own
/// panic-catching trampoline.
macro_rules! callbacks {
    ($( $js:literal => $body:ident / $n:literal ),* $(,)?) => {
        pub const EXPORTS: &[(&std::ffi::CStr, napi_callback)] = &[
            $( ($js, {
                unsafe extern "C" fn trampoline(env: napi_env, info: napi_callback_info) -> napi_value {
                    // SAFETY: Node calls a trampoline with the env and info of this call.
                    unsafe { guard::<$n>(env, info, $body) }
                }
                Some(trampoline)
            }) ),*
        ];
    };
}

callbacks! {
    c"noop" => noop / 0,
    c"setErrorFactory" => set_error_factory / 1,
    c"bitmapGet" => bitmap_get / 2,
    c"bitmapSet" => bitmap_set / 3,
    c"bitmapFindFree" => bitmap_find_free / 4,
    c"bitmapCount" => bitmap_count / 4,
    c"crc32c" => crc32c_js / 2,
    c"blockChecksum" => block_checksum / 2,
    c"isZero" => is_zero / 1,
    c"leafRuns" => leaf_runs / 3,
    c"copyRange" => copy_range / 5,
    c"copyRangeAsync" => copy_range_async / 5,
    c"patchCopyAsync" => patch_copy_async / 6,
    c"readNoWait" => read_no_wait / 3,
    c"zeroRange" => zero_range / 4,
    c"alignedBuffer" => aligned_buffer / 2,
    c"_panicForTest" => panic_for_test / 0,
}

// ---------------------------------------------------------------------------

fn noop(a: &Args<0>) -> NResult<napi_value> {
    a.env.int32(0)
}

/// `setErrorFactory(fn)`: every later error of this addon is `fn(kind, message, errno?,
/// syscall?)` (kind: invalid | sys | unsupported | native).
fn set_error_factory(a: &Args<1>) -> NResult<napi_value> {
    a.env.set_error_factory(a.function(0, "factory")?)?;
    a.env.undefined()
}

/// A deliberate panic, so tests can prove a panic becomes a JS error (code E_NATIVE)
/// and the process lives on. `resume_unwind` unwinds exactly like `panic!` but skips the
/// panic hook, so the test log is not filled with a backtrace; real panics still print one.
fn panic_for_test(_a: &Args<0>) -> NResult<napi_value> {
    std::panic::resume_unwind(Box::new("deliberate panic for tests"))
}

/// Check `[begin, end)` lies within a bitmap of `len` bytes (4 entries per byte).
fn check_range(len: usize, begin: u64, end: u64) -> NResult<()> {
    let entries = len as u64 * 4;
    if end > entries {
        return Err(Failure::Invalid(format!(
            "end {end} is past the bitmap's {entries} entries"
        )));
    }
    if begin > end {
        return Err(Failure::Invalid(format!(
            "begin {begin} is greater than end {end}"
        )));
    }
    Ok(())
}

fn check_entry(len: usize, i: u64) -> NResult<()> {
    let entries = len as u64 * 4;
    if i >= entries {
        return Err(Failure::Invalid(format!(
            "entry {i} is past the bitmap's {entries} entries"
        )));
    }
    Ok(())
}

fn bitmap_get(a: &Args<2>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    let i = a.index(1, "i")?;
    check_entry(buf.len, i)?;
    // SAFETY: inside the callback; the only slice of this memory during the call.
    let v = bitmap::get(unsafe { buf.as_slice() }, i as usize);
    a.env.uint32(v as u32)
}

fn bitmap_set(a: &Args<3>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    let i = a.index(1, "i")?;
    let v = a.index(2, "v")?;
    check_entry(buf.len, i)?;
    if v > 3 {
        return Err(Failure::Invalid(format!("v must be a count 0..3, got {v}")));
    }
    // SAFETY: inside the callback; the only slice of this memory during the call.
    bitmap::set(unsafe { buf.as_mut_slice() }, i as usize, v as u8);
    a.env.undefined()
}

fn bitmap_find_free(a: &Args<4>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    let begin = a.index(1, "begin")?;
    let end = a.index(2, "end")?;
    let cursor = a.index(3, "cursor")?;
    check_range(buf.len, begin, end)?;
    // Entries fit in usize: end <= 4 * len. A cursor above usize::MAX cannot happen on
    // 64-bit (it is <= 2^53); it is outside [begin, end) anyway and means begin.
    // SAFETY: inside the callback; the only slice of this memory during the call.
    let found = bitmap::find_free(
        unsafe { buf.as_slice() },
        begin as usize,
        end as usize,
        cursor as usize,
    );
    a.env.double(found.map_or(-1.0, |i| i as f64))
}

fn bitmap_count(a: &Args<4>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    let begin = a.index(1, "begin")?;
    let end = a.index(2, "end")?;
    let out = a.f64_out(3, "out", 4)?;
    check_range(buf.len, begin, end)?;
    // `out` may view the same ArrayBuffer as `buf`, so the byte slice's last use is the
    // count below, and `out` is written (element by element) only afterwards.
    // SAFETY: inside the callback; no mutable slice exists while this shared one is used.
    let counts = bitmap::count(unsafe { buf.as_slice() }, begin as usize, end as usize);
    for (k, c) in counts.iter().enumerate() {
        out.set(k, *c as f64);
    }
    a.env.undefined()
}

fn crc32c_js(a: &Args<2>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    let init = if a.is_undefined(1)? {
        0xFFFF_FFFF
    } else {
        a.u32(1, "init")?
    };
    // SAFETY: inside the callback; the only slice of this memory during the call.
    a.env
        .uint32(crc32c::update(init, unsafe { buf.as_slice() }))
}

fn block_checksum(a: &Args<2>) -> NResult<napi_value> {
    let block = a.bytes(0, "block")?;
    let salt = a.u32(1, "salt")?;
    if block.len < 4 {
        return Err(Failure::Invalid(format!(
            "block must be at least 4 bytes, got {}",
            block.len
        )));
    }
    // SAFETY: inside the callback; the only slice of this memory during the call.
    a.env
        .uint32(crc32c::block_checksum(unsafe { block.as_slice() }, salt))
}

fn is_zero(a: &Args<1>) -> NResult<napi_value> {
    let buf = a.bytes(0, "buf")?;
    // SAFETY: inside the callback; the only slice of this memory during the call.
    a.env.boolean(chunk::is_zero(unsafe { buf.as_slice() }))
}

fn leaf_runs(a: &Args<3>) -> NResult<napi_value> {
    let buf = a.bytes(0, "leaf")?;
    let with_time = a.boolean(1, "withTime")?;
    let out = a.f64_out(2, "out", 0)?;
    // SAFETY: inside the callback; `out` is written only through its raw pointer (it may
    // view the same memory), never as a slice, while this shared slice is alive.
    let bytes = unsafe { buf.as_slice() };
    let (nr, max) = leaf::header(bytes).map_err(Failure::Invalid)?;
    if out.len() < 4 * nr {
        return Err(Failure::Invalid(format!(
            "out must have at least {} elements, got {}",
            4 * nr,
            out.len()
        )));
    }
    let n = leaf::runs(bytes, nr, max, with_time, |k, v| out.set(k, v));
    a.env.double(n as f64)
}

/// `off + len` must stay a safe integer, so results and end offsets are exact in JS.
fn check_span(off: u64, len: u64, what: &str) -> NResult<()> {
    if off + len > MAX_SAFE_INTEGER {
        return Err(Failure::Invalid(format!("{what} + len exceeds 2^53-1")));
    }
    Ok(())
}

struct CopyArgs {
    fd_in: i32,
    off_in: u64,
    fd_out: i32,
    off_out: u64,
    len: u64,
}

impl CopyArgs {
    fn read(a: &Args<5>) -> NResult<CopyArgs> {
        let c = CopyArgs {
            fd_in: a.fd(0, "fdIn")?,
            off_in: a.index(1, "offIn")?,
            fd_out: a.fd(2, "fdOut")?,
            off_out: a.index(3, "offOut")?,
            len: a.index(4, "len")?,
        };
        check_span(c.off_in, c.len, "offIn")?;
        check_span(c.off_out, c.len, "offOut")?;
        Ok(c)
    }

    fn run(&self) -> NResult<u64> {
        Ok(chunk::copy_range(
            self.fd_in,
            self.off_in,
            self.fd_out,
            self.off_out,
            self.len,
        )?)
    }
}

fn copy_range(a: &Args<5>) -> NResult<napi_value> {
    let n = CopyArgs::read(a)?.run()?;
    a.env.double(n as f64)
}

fn copy_range_async(a: &Args<5>) -> NResult<napi_value> {
    // Argument errors throw synchronously (like the twin); I/O errors reject the promise.
    let c = CopyArgs::read(a)?;
    a.env.spawn_promise(
        "thinsim.copyRange",
        move || c.run(),
        |env, n| env.double(n as f64),
    )
}

/// `patchCopyAsync(fd, src, dst, len, patch, patchOff)`: see `chunk::patch_copy`.
fn patch_copy_async(a: &Args<6>) -> NResult<napi_value> {
    let fd = a.fd(0, "fd")?;
    let src = a.index(1, "src")?;
    let dst = a.index(2, "dst")?;
    let len = a.index(3, "len")?;
    let bytes = a.bytes(4, "patch")?;
    let patch_off = a.index(5, "patchOff")?;
    check_span(src, len, "src")?;
    check_span(dst, len, "dst")?;
    if patch_off + bytes.len as u64 > len {
        return Err(Failure::Invalid(format!(
            "patchOff {patch_off} + patch length {} is past len {len}",
            bytes.len
        )));
    }
    if src < dst + len && dst < src + len {
        return Err(Failure::Invalid(format!(
            "source {src}+{len} and destination {dst}+{len} overlap"
        )));
    }
    // The patch is copied here (a few KiB): the caller's buffer may change or be freed
    // before the thread pool gets to it.
    // SAFETY: within the callback that produced `bytes`; no mutable slice of it exists.
    let patch = unsafe { bytes.as_slice() }.to_vec();
    a.env.spawn_promise(
        "thinsim.patchCopy",
        move || Ok(chunk::patch_copy(fd, src, dst, len, &patch, patch_off)?),
        |env, n| env.double(n as f64),
    )
}

/// `readNoWait(fd, buf, off)`: bytes read from the page cache (short only at EOF), or -1
/// when that would mean waiting for I/O. See `chunk::read_nowait`.
fn read_no_wait(a: &Args<3>) -> NResult<napi_value> {
    let fd = a.fd(0, "fd")?;
    let bytes = a.bytes(1, "buf")?;
    let off = a.index(2, "off")?;
    check_span(off, bytes.len as u64, "off")?;
    // SAFETY: within the callback that produced `bytes`, and the only slice made of it.
    let buf = unsafe { bytes.as_mut_slice() };
    match chunk::read_nowait(fd, buf, off)? {
        Some(n) => a.env.double(n as f64),
        None => a.env.double(-1.0),
    }
}

fn zero_range(a: &Args<4>) -> NResult<napi_value> {
    let fd = a.fd(0, "fd")?;
    let off = a.index(1, "off")?;
    let len = a.index(2, "len")?;
    let punch = a.boolean(3, "punch")?;
    check_span(off, len, "off")?;
    let m = chunk::zero_range(fd, off, len, punch)?;
    a.env.uint32(m as u32)
}

/// Largest alignment accepted: beyond 1 MiB the padding waste is never what a caller wants.
const MAX_ALIGN: u64 = 1 << 20;

fn aligned_buffer(a: &Args<2>) -> NResult<napi_value> {
    let size = a.index(0, "size")?;
    let align = if a.is_undefined(1)? {
        4096
    } else {
        a.index(1, "align")?
    };
    if align == 0 || !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(Failure::Invalid(format!(
            "align must be a power of two in 1..{MAX_ALIGN}, got {align}"
        )));
    }
    let layout = usize::try_from(size)
        .ok()
        .and_then(|s| chunk::aligned_layout(s, align as usize))
        .ok_or_else(|| {
            Failure::Invalid(format!("cannot lay out {size} bytes aligned to {align}"))
        })?;
    a.env.external_buffer(size as usize, layout)
}

//! The JS-facing functions: argument validation, conversion, and a call into the plain
//! Rust modules. One `fn(env, info) -> NResult<napi_value>` per JS function; the
//! `callbacks!` table wraps each in an `extern "C"` trampoline that catches panics, so
//! no panic ever unwinds into Node (that would abort the process).
//!
//! Validation mirrors `src/hot/twin.ts` argument by argument, left to right: a wrong JS
//! type is a TypeError, a right type with a bad value a RangeError (both with code
//! `E_INVALID`); a failed syscall is an Error with `code` = errno name and `syscall`.

use std::alloc::Layout;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::bitmap;
use crate::chunk::{self, SysError};
use crate::crc32c;
use crate::napi::*;

impl From<SysError> for Failure {
    fn from(e: SysError) -> Self {
        Failure::Sys {
            syscall: e.syscall,
            errno: e.errno,
        }
    }
}

type Body = unsafe fn(napi_env, napi_callback_info) -> NResult<napi_value>;

/// Run a callback body; turn `Err` and panics into one thrown JS error.
///
/// # Safety
/// `env`/`info` are the ones Node passed to the trampoline.
unsafe fn guard(env: napi_env, info: napi_callback_info, body: Body) -> napi_value {
    // AssertUnwindSafe: after a panic we only build an error; no state observed by the
    // body is used again (the thread-local bounce buffer is plain bytes).
    match catch_unwind(AssertUnwindSafe(|| body(env, info))) {
        Ok(Ok(v)) => v,
        Ok(Err(f)) => {
            throw(env, &f);
            ptr::null_mut()
        }
        Err(payload) => {
            throw(env, &Failure::Panic(panic_message(&*payload)));
            ptr::null_mut()
        }
    }
}

/// Build the export table: JS name => body, each behind its own panic-catching trampoline.
macro_rules! callbacks {
    ($( $js:literal => $body:ident ),* $(,)?) => {
        pub const EXPORTS: &[(ExportName, napi_callback)] = &[
            $( ($js, {
                unsafe extern "C" fn trampoline(env: napi_env, info: napi_callback_info) -> napi_value {
                    guard(env, info, $body)
                }
                Some(trampoline)
            }) ),*
        ];
    };
}

callbacks! {
    c"noop" => noop,
    c"bitmapGet" => bitmap_get,
    c"bitmapSet" => bitmap_set,
    c"bitmapFindFree" => bitmap_find_free,
    c"bitmapCount" => bitmap_count,
    c"crc32c" => crc32c_js,
    c"blockChecksum" => block_checksum,
    c"isZero" => is_zero,
    c"copyRange" => copy_range,
    c"copyRangeAsync" => copy_range_async,
    c"zeroRange" => zero_range,
    c"alignedBuffer" => aligned_buffer,
    c"_panicForTest" => panic_for_test,
}

// ---------------------------------------------------------------------------

unsafe fn noop(env: napi_env, _info: napi_callback_info) -> NResult<napi_value> {
    ret_i32(env, 0)
}

/// A deliberate panic, so tests can prove a panic becomes a JS Error (code E_NATIVE)
/// and the process lives on. `resume_unwind` unwinds exactly like `panic!` but skips the
/// panic hook, so the test log is not filled with a backtrace; real panics still print one.
unsafe fn panic_for_test(_env: napi_env, _info: napi_callback_info) -> NResult<napi_value> {
    std::panic::resume_unwind(Box::new("deliberate panic for tests"))
}

/// Check `[begin, end)` lies within a bitmap of `len` bytes (4 entries per byte).
fn check_range(len: usize, begin: u64, end: u64) -> NResult<()> {
    let entries = len as u64 * 4;
    if end > entries {
        return Err(Failure::Range(format!(
            "end {end} is past the bitmap's {entries} entries"
        )));
    }
    if begin > end {
        return Err(Failure::Range(format!(
            "begin {begin} is greater than end {end}"
        )));
    }
    Ok(())
}

fn check_entry(len: usize, i: u64) -> NResult<()> {
    let entries = len as u64 * 4;
    if i >= entries {
        return Err(Failure::Range(format!(
            "entry {i} is past the bitmap's {entries} entries"
        )));
    }
    Ok(())
}

unsafe fn bitmap_get(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<2>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    let i = a.index(1, "i")?;
    check_entry(buf.len, i)?;
    // SAFETY: the only slice of this memory during the call.
    let v = bitmap::get(buf.as_slice(), i as usize);
    ret_u32(env, v as u32)
}

unsafe fn bitmap_set(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<3>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    let i = a.index(1, "i")?;
    let v = a.index(2, "v")?;
    check_entry(buf.len, i)?;
    if v > 3 {
        return Err(Failure::Range(format!("v must be a count 0..3, got {v}")));
    }
    // SAFETY: the only slice of this memory during the call.
    bitmap::set(buf.as_mut_slice(), i as usize, v as u8);
    ret_undefined(env)
}

unsafe fn bitmap_find_free(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<4>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    let begin = a.index(1, "begin")?;
    let end = a.index(2, "end")?;
    let cursor = a.index(3, "cursor")?;
    check_range(buf.len, begin, end)?;
    // Entries fit in usize: end <= 4 * len. A cursor above usize::MAX cannot happen on
    // 64-bit (it is <= 2^53); it is outside [begin, end) anyway and means begin.
    // SAFETY: the only slice of this memory during the call.
    let found = bitmap::find_free(
        buf.as_slice(),
        begin as usize,
        end as usize,
        cursor as usize,
    );
    ret_f64(env, found.map_or(-1.0, |i| i as f64))
}

unsafe fn bitmap_count(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<4>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    let begin = a.index(1, "begin")?;
    let end = a.index(2, "end")?;
    let (out, out_len) = a.f64s(3, "out")?;
    check_range(buf.len, begin, end)?;
    if out_len < 4 {
        return Err(Failure::Range(format!(
            "out must have at least 4 elements, got {out_len}"
        )));
    }
    // `out` may view the same ArrayBuffer as `buf`, so the byte slice's last use is the
    // count below, and `out` is written through its raw pointer only afterwards.
    // SAFETY: no mutable slice exists while this shared one is used.
    let counts = bitmap::count(buf.as_slice(), begin as usize, end as usize);
    for (k, c) in counts.iter().enumerate() {
        // SAFETY: out has >= 4 elements and is 8-byte aligned (a Float64Array invariant).
        out.add(k).write(*c as f64);
    }
    ret_undefined(env)
}

unsafe fn crc32c_js(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<2>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    let init = if a.is_undefined(1)? {
        0xFFFF_FFFF
    } else {
        a.u32(1, "init")?
    };
    // SAFETY: the only slice of this memory during the call.
    ret_u32(env, crc32c::update(init, buf.as_slice()))
}

unsafe fn block_checksum(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<2>::get(env, info)?;
    let block = a.bytes(0, "block")?;
    let salt = a.u32(1, "salt")?;
    if block.len < 4 {
        return Err(Failure::Range(format!(
            "block must be at least 4 bytes, got {}",
            block.len
        )));
    }
    // SAFETY: the only slice of this memory during the call.
    ret_u32(env, crc32c::block_checksum(block.as_slice(), salt))
}

unsafe fn is_zero(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<1>::get(env, info)?;
    let buf = a.bytes(0, "buf")?;
    // SAFETY: the only slice of this memory during the call.
    ret_bool(env, chunk::is_zero(buf.as_slice()))
}

/// `off + len` must stay a safe integer, so results and end offsets are exact in JS.
fn check_span(off: u64, len: u64, what: &str) -> NResult<()> {
    if off + len > MAX_SAFE_INTEGER {
        return Err(Failure::Range(format!("{what} + len exceeds 2^53-1")));
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

fn copy_args<const N: usize>(a: &Args<N>) -> NResult<CopyArgs> {
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

unsafe fn copy_range(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<5>::get(env, info)?;
    let c = copy_args(&a)?;
    let n = chunk::copy_range(c.fd_in, c.off_in, c.fd_out, c.off_out, c.len)?;
    ret_f64(env, n as f64)
}

/// State of one `copyRangeAsync`, owned by the async work from queueing to completion.
struct CopyJob {
    args: CopyArgs,
    deferred: napi_deferred,
    work: napi_async_work,
    result: Option<Result<u64, Failure>>,
}

unsafe fn copy_range_async(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<5>::get(env, info)?;
    // Argument errors throw synchronously (like the twin); I/O errors reject the promise.
    let args = copy_args(&a)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    check(
        napi_create_promise(env, &mut deferred, &mut promise),
        "napi_create_promise",
    )?;
    let job = Box::into_raw(Box::new(CopyJob {
        args,
        deferred,
        work: ptr::null_mut(),
        result: None,
    }));
    let name = js_string(env, "thinsim.copyRange")?;
    let st = napi_create_async_work(
        env,
        ptr::null_mut(),
        name,
        Some(copy_execute),
        Some(copy_complete),
        job as *mut c_void,
        &mut (*job).work,
    );
    if st != NAPI_OK {
        // SAFETY: the job was never handed to Node; we still own it.
        drop(Box::from_raw(job));
        return Err(Failure::Napi {
            call: "napi_create_async_work",
            status: st,
        });
    }
    let st = napi_queue_async_work(env, (*job).work);
    if st != NAPI_OK {
        // SAFETY: not queued, so neither callback will run; reclaim both.
        napi_delete_async_work(env, (*job).work);
        drop(Box::from_raw(job));
        return Err(Failure::Napi {
            call: "napi_queue_async_work",
            status: st,
        });
    }
    Ok(promise)
}

/// Runs on a libuv pool thread: no Node-API calls allowed here.
unsafe extern "C" fn copy_execute(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the CopyJob leaked in copy_range_async; only this thread touches
    // it until copy_complete runs.
    let job = &mut *(data as *mut CopyJob);
    let c = &job.args;
    let r = catch_unwind(AssertUnwindSafe(|| {
        chunk::copy_range(c.fd_in, c.off_in, c.fd_out, c.off_out, c.len)
    }));
    job.result = Some(match r {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.into()),
        Err(p) => Err(Failure::Panic(panic_message(&*p))),
    });
}

/// Back on the JS thread: settle the promise and free the job.
unsafe extern "C" fn copy_complete(env: napi_env, status: napi_status, data: *mut c_void) {
    // SAFETY: the pool thread is done with the job; we take ownership back exactly once.
    let job = Box::from_raw(data as *mut CopyJob);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        napi_delete_async_work(env, job.work);
        let outcome = if status == NAPI_CANCELLED {
            Err(Failure::Napi {
                call: "async copy (cancelled)",
                status,
            })
        } else {
            job.result.clone().unwrap_or(Err(Failure::Napi {
                call: "async copy (no result)",
                status,
            }))
        };
        let settled = match outcome {
            Ok(n) => ret_f64(env, n as f64).map(|v| napi_resolve_deferred(env, job.deferred, v)),
            Err(f) => Ok(napi_reject_deferred(env, job.deferred, make_error(env, &f))),
        };
        if !matches!(settled, Ok(NAPI_OK)) {
            // Could not settle normally: reject with whatever error we can build so the
            // promise does not hang.
            let f = Failure::Napi {
                call: "settling copyRangeAsync",
                status: NAPI_GENERIC_FAILURE,
            };
            napi_reject_deferred(env, job.deferred, make_error(env, &f));
        }
    }));
}

unsafe fn zero_range(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<4>::get(env, info)?;
    let fd = a.fd(0, "fd")?;
    let off = a.index(1, "off")?;
    let len = a.index(2, "len")?;
    let punch = a.boolean(3, "punch")?;
    check_span(off, len, "off")?;
    let m = chunk::zero_range(fd, off, len, punch)?;
    ret_u32(env, m as u32)
}

/// Largest alignment accepted: beyond 1 MiB the padding waste is never what a caller wants.
const MAX_ALIGN: u64 = 1 << 20;

/// Finalizer of an aligned buffer: free with the layout it was allocated with.
unsafe extern "C" fn free_aligned_buffer(env: napi_env, data: *mut c_void, hint: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `hint` is the Box<Layout> leaked in aligned_buffer and `data` the
        // matching allocation; Node calls this finalizer once.
        let layout = Box::from_raw(hint as *mut Layout);
        chunk::free_aligned(data as *mut u8, *layout);
        let mut adjusted = 0i64;
        napi_adjust_external_memory(env, -(layout.size() as i64), &mut adjusted);
    }));
}

unsafe fn aligned_buffer(env: napi_env, info: napi_callback_info) -> NResult<napi_value> {
    let a = Args::<2>::get(env, info)?;
    let size = a.index(0, "size")?;
    let align = if a.is_undefined(1)? {
        4096
    } else {
        a.index(1, "align")?
    };
    if align == 0 || !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(Failure::Range(format!(
            "align must be a power of two in 1..{MAX_ALIGN}, got {align}"
        )));
    }
    let layout = chunk::aligned_layout(size as usize, align as usize)
        .ok_or_else(|| Failure::Range(format!("cannot lay out {size} bytes aligned to {align}")))?;
    // SAFETY: layout from aligned_layout; ownership passes to the Buffer's finalizer below.
    let data = chunk::alloc_aligned(layout);
    if data.is_null() {
        return Err(Failure::Range(format!(
            "cannot allocate {size} bytes aligned to {align}"
        )));
    }
    let hint = Box::into_raw(Box::new(layout));
    let mut out = ptr::null_mut();
    let st = napi_create_external_buffer(
        env,
        size as usize,
        data as *mut c_void,
        Some(free_aligned_buffer),
        hint as *mut c_void,
        &mut out,
    );
    if st != NAPI_OK {
        // SAFETY: Node refused the memory, so the finalizer will never run; free it here.
        chunk::free_aligned(data, *Box::from_raw(hint));
        return Err(Failure::Range(format!(
            "cannot create a Buffer of {size} bytes (napi_status {st})"
        )));
    }
    // Tell V8 about memory it cannot see, so GC pressure accounts for large buffers.
    let mut adjusted = 0i64;
    napi_adjust_external_memory(env, layout.size() as i64, &mut adjusted);
    Ok(out)
}

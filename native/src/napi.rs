//! Hand-declared Node-API (the subset thinsim uses) plus small helpers for
//! reading arguments and throwing errors.
//!
//! Why hand-declared: crates.io is unreachable, so `napi-sys` is not available.
//! The C ABI below follows `js_native_api_types.h` / `node_api_types.h` of Node 20.
//! Handles are opaque pointers and every enum is a C int. The `napi_*` symbols stay
//! undefined in the shared object and are resolved from the `node` executable when
//! the addon is loaded, which is also why this module is excluded from `cargo test`
//! builds (a test executable has no `node` to resolve them from).
//!
//! Contract of the helpers: they never throw by themselves; a failed check returns
//! `Err(Failure)` and the caller (see `exports.rs`) turns it into exactly one thrown
//! JS error. No helper calls back into JS.

#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

// ---------------------------------------------------------------------------
// Types

#[repr(C)]
pub struct napi_env__ {
    _private: [u8; 0],
}
#[repr(C)]
pub struct napi_value__ {
    _private: [u8; 0],
}
#[repr(C)]
pub struct napi_callback_info__ {
    _private: [u8; 0],
}
#[repr(C)]
pub struct napi_deferred__ {
    _private: [u8; 0],
}
#[repr(C)]
pub struct napi_async_work__ {
    _private: [u8; 0],
}

pub type napi_env = *mut napi_env__;
pub type napi_value = *mut napi_value__;
pub type napi_callback_info = *mut napi_callback_info__;
pub type napi_deferred = *mut napi_deferred__;
pub type napi_async_work = *mut napi_async_work__;

pub type napi_status = i32;
pub const NAPI_OK: napi_status = 0;
pub const NAPI_INVALID_ARG: napi_status = 1;
pub const NAPI_OBJECT_EXPECTED: napi_status = 2;
pub const NAPI_STRING_EXPECTED: napi_status = 3;
pub const NAPI_NUMBER_EXPECTED: napi_status = 6;
pub const NAPI_BOOLEAN_EXPECTED: napi_status = 7;
pub const NAPI_GENERIC_FAILURE: napi_status = 9;
pub const NAPI_PENDING_EXCEPTION: napi_status = 10;
pub const NAPI_CANCELLED: napi_status = 11;
pub const NAPI_NO_EXTERNAL_BUFFERS_ALLOWED: napi_status = 22;

pub type napi_valuetype = i32;
pub const NAPI_UNDEFINED: napi_valuetype = 0;
pub const NAPI_NULL: napi_valuetype = 1;
pub const NAPI_BOOLEAN: napi_valuetype = 2;
pub const NAPI_NUMBER: napi_valuetype = 3;

pub type napi_typedarray_type = i32;
pub const NAPI_UINT8_ARRAY: napi_typedarray_type = 1;
pub const NAPI_FLOAT64_ARRAY: napi_typedarray_type = 8;

pub type napi_callback = Option<unsafe extern "C" fn(napi_env, napi_callback_info) -> napi_value>;
pub type napi_finalize = Option<unsafe extern "C" fn(napi_env, *mut c_void, *mut c_void)>;
pub type napi_async_execute_callback = Option<unsafe extern "C" fn(napi_env, *mut c_void)>;
pub type napi_async_complete_callback =
    Option<unsafe extern "C" fn(napi_env, napi_status, *mut c_void)>;

/// `NAPI_AUTO_LENGTH`: the string is NUL-terminated.
pub const NAPI_AUTO_LENGTH: usize = usize::MAX;

// ---------------------------------------------------------------------------
// Functions (all exported by Node since Node-API version 1..8)

extern "C" {
    pub fn napi_create_function(
        env: napi_env,
        utf8name: *const c_char,
        length: usize,
        cb: napi_callback,
        data: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_set_named_property(
        env: napi_env,
        object: napi_value,
        utf8name: *const c_char,
        value: napi_value,
    ) -> napi_status;
    pub fn napi_get_cb_info(
        env: napi_env,
        cbinfo: napi_callback_info,
        argc: *mut usize,
        argv: *mut napi_value,
        this_arg: *mut napi_value,
        data: *mut *mut c_void,
    ) -> napi_status;

    pub fn napi_typeof(
        env: napi_env,
        value: napi_value,
        result: *mut napi_valuetype,
    ) -> napi_status;
    pub fn napi_get_value_double(env: napi_env, value: napi_value, result: *mut f64)
        -> napi_status;
    pub fn napi_get_value_int64(env: napi_env, value: napi_value, result: *mut i64) -> napi_status;
    pub fn napi_get_value_uint32(env: napi_env, value: napi_value, result: *mut u32)
        -> napi_status;
    pub fn napi_get_value_bool(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_is_typedarray(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_get_typedarray_info(
        env: napi_env,
        typedarray: napi_value,
        type_: *mut napi_typedarray_type,
        length: *mut usize,
        data: *mut *mut c_void,
        arraybuffer: *mut napi_value,
        byte_offset: *mut usize,
    ) -> napi_status;
    pub fn napi_get_buffer_info(
        env: napi_env,
        value: napi_value,
        data: *mut *mut c_void,
        length: *mut usize,
    ) -> napi_status;

    pub fn napi_get_undefined(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_get_boolean(env: napi_env, value: bool, result: *mut napi_value) -> napi_status;
    pub fn napi_create_double(env: napi_env, value: f64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_int32(env: napi_env, value: i32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_uint32(env: napi_env, value: u32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_int64(env: napi_env, value: i64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_string_utf8(
        env: napi_env,
        str_: *const c_char,
        length: usize,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_buffer(
        env: napi_env,
        size: usize,
        data: *mut *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_external_buffer(
        env: napi_env,
        length: usize,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_adjust_external_memory(
        env: napi_env,
        change_in_bytes: i64,
        adjusted_value: *mut i64,
    ) -> napi_status;

    pub fn napi_create_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_type_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_range_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_throw(env: napi_env, error: napi_value) -> napi_status;
    pub fn napi_throw_error(env: napi_env, code: *const c_char, msg: *const c_char) -> napi_status;
    pub fn napi_is_exception_pending(env: napi_env, result: *mut bool) -> napi_status;

    pub fn napi_create_promise(
        env: napi_env,
        deferred: *mut napi_deferred,
        promise: *mut napi_value,
    ) -> napi_status;
    pub fn napi_resolve_deferred(
        env: napi_env,
        deferred: napi_deferred,
        resolution: napi_value,
    ) -> napi_status;
    pub fn napi_reject_deferred(
        env: napi_env,
        deferred: napi_deferred,
        rejection: napi_value,
    ) -> napi_status;

    pub fn napi_create_async_work(
        env: napi_env,
        async_resource: napi_value,
        async_resource_name: napi_value,
        execute: napi_async_execute_callback,
        complete: napi_async_complete_callback,
        data: *mut c_void,
        result: *mut napi_async_work,
    ) -> napi_status;
    pub fn napi_queue_async_work(env: napi_env, work: napi_async_work) -> napi_status;
    pub fn napi_delete_async_work(env: napi_env, work: napi_async_work) -> napi_status;
}

// ---------------------------------------------------------------------------
// Failures and how they become JS errors

/// Everything that can go wrong in a callback, before it is turned into a JS value.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Wrong JS type for an argument -> `TypeError` with code `E_INVALID`.
    Type(String),
    /// Right type, value out of range -> `RangeError` with code `E_INVALID`.
    Range(String),
    /// A syscall failed -> `Error` with `code` = errno name, `errno` (negative, as
    /// Node's fs errors have it) and `syscall`.
    Sys { syscall: &'static str, errno: i32 },
    /// A Rust panic was caught -> `Error` with code `E_NATIVE`.
    Panic(String),
    /// A Node-API call itself failed (should not happen) -> `Error` with code `E_NATIVE`,
    /// unless a JS exception is already pending, which then wins.
    Napi {
        call: &'static str,
        status: napi_status,
    },
}

pub type NResult<T> = Result<T, Failure>;

/// Map a Node-API status to a `Result`, naming the call for the error message.
#[inline]
pub fn check(status: napi_status, call: &'static str) -> NResult<()> {
    if status == NAPI_OK {
        Ok(())
    } else {
        Err(Failure::Napi { call, status })
    }
}

/// Linux errno numbers to their names (the generic asm-generic set shared by x86_64 and
/// aarch64). Unknown numbers become `ERRNO_<n>` so the code is still stable and greppable.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        15 => "ENOTBLK",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        33 => "EDOM",
        34 => "ERANGE",
        35 => "EDEADLK",
        36 => "ENAMETOOLONG",
        37 => "ENOLCK",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        116 => "ESTALE",
        121 => "EREMOTEIO",
        122 => "EDQUOT",
        125 => "ECANCELED",
        _ => return format!("ERRNO_{errno}"),
    };
    name.to_string()
}

/// Build a JS string; on failure the caller gets `Failure::Napi`.
///
/// # Safety
/// `env` must be the env of the current callback.
pub unsafe fn js_string(env: napi_env, s: &str) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `s` is valid UTF-8 of the given length; Node copies it.
    check(
        napi_create_string_utf8(env, s.as_ptr() as *const c_char, s.len(), &mut out),
        "napi_create_string_utf8",
    )?;
    Ok(out)
}

/// Turn a `Failure` into a JS error object (not thrown). Returns null if even that failed
/// or if the failure means "an exception is already pending".
///
/// # Safety
/// `env` must be the env of the current callback or completion.
pub unsafe fn make_error(env: napi_env, failure: &Failure) -> napi_value {
    let build = || -> NResult<napi_value> {
        let mut err = ptr::null_mut();
        match failure {
            Failure::Type(msg) => {
                let (code, msg) = (js_string(env, "E_INVALID")?, js_string(env, msg)?);
                check(
                    napi_create_type_error(env, code, msg, &mut err),
                    "napi_create_type_error",
                )?;
            }
            Failure::Range(msg) => {
                let (code, msg) = (js_string(env, "E_INVALID")?, js_string(env, msg)?);
                check(
                    napi_create_range_error(env, code, msg, &mut err),
                    "napi_create_range_error",
                )?;
            }
            Failure::Sys { syscall, errno } => {
                let name = errno_name(*errno);
                let text = std::io::Error::from_raw_os_error(*errno);
                let message = format!("{syscall} failed: {name}: {text}");
                let (code, msg) = (js_string(env, &name)?, js_string(env, &message)?);
                check(
                    napi_create_error(env, code, msg, &mut err),
                    "napi_create_error",
                )?;
                let mut n = ptr::null_mut();
                check(napi_create_int32(env, -*errno, &mut n), "napi_create_int32")?;
                check(
                    napi_set_named_property(env, err, c"errno".as_ptr(), n),
                    "napi_set_named_property",
                )?;
                let sc = js_string(env, syscall)?;
                check(
                    napi_set_named_property(env, err, c"syscall".as_ptr(), sc),
                    "napi_set_named_property",
                )?;
            }
            Failure::Panic(msg) => {
                let (code, msg) = (
                    js_string(env, "E_NATIVE")?,
                    js_string(env, &format!("thinsim native panic: {msg}"))?,
                );
                check(
                    napi_create_error(env, code, msg, &mut err),
                    "napi_create_error",
                )?;
            }
            Failure::Napi { call, status } => {
                let message = format!("thinsim native: {call} failed with napi_status {status}");
                let (code, msg) = (js_string(env, "E_NATIVE")?, js_string(env, &message)?);
                check(
                    napi_create_error(env, code, msg, &mut err),
                    "napi_create_error",
                )?;
            }
        }
        Ok(err)
    };
    build().unwrap_or(ptr::null_mut())
}

/// Throw `failure` unless a JS exception is already pending (a pending exception is the
/// more precise report, e.g. a getter that threw).
///
/// # Safety
/// `env` must be the env of the current callback.
pub unsafe fn throw(env: napi_env, failure: &Failure) {
    let mut pending = false;
    // SAFETY: plain query on a live env.
    if napi_is_exception_pending(env, &mut pending) == NAPI_OK && pending {
        return;
    }
    let err = make_error(env, failure);
    if err.is_null() {
        // Last resort; both strings are static and NUL-terminated.
        napi_throw_error(
            env,
            c"E_NATIVE".as_ptr(),
            c"thinsim native: could not build an error object".as_ptr(),
        );
    } else {
        napi_throw(env, err);
    }
}

/// Render a caught panic payload as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

// ---------------------------------------------------------------------------
// Argument access

/// The arguments of one callback. Missing arguments read as `undefined` (Node fills
/// the tail of `argv` with undefined up to the capacity we pass).
pub struct Args<const N: usize> {
    pub env: napi_env,
    pub argv: [napi_value; N],
}

impl<const N: usize> Args<N> {
    /// # Safety
    /// `env`/`info` must be the ones passed to the current callback.
    pub unsafe fn get(env: napi_env, info: napi_callback_info) -> NResult<Self> {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        check(
            napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            ),
            "napi_get_cb_info",
        )?;
        Ok(Args { env, argv })
    }

    fn type_of(&self, i: usize) -> NResult<napi_valuetype> {
        let mut t = 0;
        // SAFETY: argv[i] is a live handle of this callback scope.
        check(
            unsafe { napi_typeof(self.env, self.argv[i], &mut t) },
            "napi_typeof",
        )?;
        Ok(t)
    }

    pub fn is_undefined(&self, i: usize) -> NResult<bool> {
        Ok(self.type_of(i)? == NAPI_UNDEFINED)
    }

    /// A JS number, any value (TypeError if not a number).
    pub fn number(&self, i: usize, name: &str) -> NResult<f64> {
        let mut v = 0.0;
        // SAFETY: live handle; a non-number yields a status, not UB.
        let st = unsafe { napi_get_value_double(self.env, self.argv[i], &mut v) };
        match st {
            NAPI_OK => Ok(v),
            NAPI_NUMBER_EXPECTED => Err(Failure::Type(format!("{name} must be a number"))),
            s => Err(Failure::Napi {
                call: "napi_get_value_double",
                status: s,
            }),
        }
    }

    /// A non-negative safe integer (offsets, lengths, indices): TypeError if not a number,
    /// RangeError if fractional, negative, NaN/Infinity or above 2^53-1.
    pub fn index(&self, i: usize, name: &str) -> NResult<u64> {
        let v = self.number(i, name)?;
        if !(v >= 0.0 && v <= MAX_SAFE_INTEGER as f64 && v.fract() == 0.0) {
            return Err(Failure::Range(format!(
                "{name} must be a non-negative safe integer, got {v}"
            )));
        }
        Ok(v as u64)
    }

    /// A file descriptor: an integer in 0..=2^31-1.
    pub fn fd(&self, i: usize, name: &str) -> NResult<i32> {
        let v = self.number(i, name)?;
        if !(v >= 0.0 && v <= i32::MAX as f64 && v.fract() == 0.0) {
            return Err(Failure::Range(format!(
                "{name} must be a file descriptor (integer 0..2^31-1), got {v}"
            )));
        }
        Ok(v as i32)
    }

    /// An unsigned 32-bit integer (salts, crc registers).
    pub fn u32(&self, i: usize, name: &str) -> NResult<u32> {
        let v = self.number(i, name)?;
        if !(v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0) {
            return Err(Failure::Range(format!(
                "{name} must be an integer in 0..2^32-1, got {v}"
            )));
        }
        Ok(v as u32)
    }

    pub fn boolean(&self, i: usize, name: &str) -> NResult<bool> {
        let mut v = false;
        // SAFETY: live handle; a non-boolean yields a status.
        let st = unsafe { napi_get_value_bool(self.env, self.argv[i], &mut v) };
        match st {
            NAPI_OK => Ok(v),
            NAPI_BOOLEAN_EXPECTED => Err(Failure::Type(format!("{name} must be a boolean"))),
            s => Err(Failure::Napi {
                call: "napi_get_value_bool",
                status: s,
            }),
        }
    }

    /// The (data pointer, element count) of a typed array of the wanted kind.
    /// The pointer may be null when the length is 0, and may be unaligned for Uint8Array.
    fn typed(
        &self,
        i: usize,
        want: napi_typedarray_type,
        name: &str,
        kind: &str,
    ) -> NResult<(*mut c_void, usize)> {
        let mut is_ta = false;
        // SAFETY: live handle.
        check(
            unsafe { napi_is_typedarray(self.env, self.argv[i], &mut is_ta) },
            "napi_is_typedarray",
        )?;
        if !is_ta {
            return Err(Failure::Type(format!("{name} must be a {kind}")));
        }
        let (mut t, mut len, mut data) = (0, 0usize, ptr::null_mut());
        // SAFETY: the value is a typed array; unused outputs may be null per the API.
        check(
            unsafe {
                napi_get_typedarray_info(
                    self.env,
                    self.argv[i],
                    &mut t,
                    &mut len,
                    &mut data,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            },
            "napi_get_typedarray_info",
        )?;
        if t != want {
            return Err(Failure::Type(format!("{name} must be a {kind}")));
        }
        Ok((data, len))
    }

    /// A Uint8Array (or Buffer) as raw parts. Callers build at most one live slice from it
    /// at a time, because two arguments may share memory.
    pub fn bytes(&self, i: usize, name: &str) -> NResult<RawBytes> {
        let (data, len) = self.typed(i, NAPI_UINT8_ARRAY, name, "Uint8Array")?;
        Ok(RawBytes {
            ptr: data as *mut u8,
            len,
        })
    }

    /// A Float64Array; returns (pointer, element count). Its data is 8-byte aligned
    /// because JS refuses to create a misaligned Float64Array.
    pub fn f64s(&self, i: usize, name: &str) -> NResult<(*mut f64, usize)> {
        let (data, len) = self.typed(i, NAPI_FLOAT64_ARRAY, name, "Float64Array")?;
        Ok((data as *mut f64, len))
    }
}

pub const MAX_SAFE_INTEGER: u64 = (1u64 << 53) - 1;

/// Data of a JS Uint8Array, valid for the duration of the current callback (JS cannot
/// run, so the backing store cannot be detached or moved while we hold it).
#[derive(Clone, Copy)]
pub struct RawBytes {
    ptr: *mut u8,
    pub len: usize,
}

impl RawBytes {
    /// # Safety
    /// No mutable slice of the same memory may be alive while the returned one is.
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: Node guarantees ptr..ptr+len is the live backing store (see type docs).
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }

    /// # Safety
    /// No other slice of the same memory may be alive while the returned one is.
    pub unsafe fn as_mut_slice<'a>(self) -> &'a mut [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &mut []
        } else {
            // SAFETY: as above, plus exclusivity promised by the caller.
            std::slice::from_raw_parts_mut(self.ptr, self.len)
        }
    }
}

// ---------------------------------------------------------------------------
// Return values

/// # Safety
/// `env` must be live.
pub unsafe fn ret_f64(env: napi_env, v: f64) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    check(napi_create_double(env, v, &mut out), "napi_create_double")?;
    Ok(out)
}

/// # Safety
/// `env` must be live.
pub unsafe fn ret_u32(env: napi_env, v: u32) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    check(napi_create_uint32(env, v, &mut out), "napi_create_uint32")?;
    Ok(out)
}

/// # Safety
/// `env` must be live.
pub unsafe fn ret_i32(env: napi_env, v: i32) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    check(napi_create_int32(env, v, &mut out), "napi_create_int32")?;
    Ok(out)
}

/// # Safety
/// `env` must be live.
pub unsafe fn ret_bool(env: napi_env, v: bool) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    check(napi_get_boolean(env, v, &mut out), "napi_get_boolean")?;
    Ok(out)
}

/// # Safety
/// `env` must be live.
pub unsafe fn ret_undefined(env: napi_env) -> NResult<napi_value> {
    let mut out = ptr::null_mut();
    check(napi_get_undefined(env, &mut out), "napi_get_undefined")?;
    Ok(out)
}

/// A NUL-terminated name for `napi_create_function`.
pub type ExportName = &'static CStr;

//! Values in and out of a callback: `Env` (the live environment, making JS values) and
//! `Args` (reading and validating arguments).
//!
//! Contract: an `Env` is made only from the env Node passed to the callback or completion
//! that is running (`Env::from_raw` is unsafe for that reason) and is used only inside it;
//! given that, every method here is safe. Validation failures are `Failure::Invalid` with a
//! message naming the argument; a failed Node-API call is `Failure::Napi`. Nothing here
//! throws or calls back into JS.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use super::error::{check, Failure, NResult};
use super::sys::*;

/// The Node-API environment of the running callback. Copy, and !Send (a raw pointer):
/// it never leaves the JS thread.
#[derive(Clone, Copy)]
pub struct Env(napi_env);

impl Env {
    /// # Safety
    /// `raw` must be the env Node passed to the callback, completion or finalizer that is
    /// running, and the `Env` must not be kept beyond it.
    pub unsafe fn from_raw(raw: napi_env) -> Env {
        Env(raw)
    }

    pub fn raw(self) -> napi_env {
        self.0
    }

    /// Run one Node-API getter/creator that fills `out`, checking its status.
    fn make<T>(
        self,
        call: &'static str,
        f: impl FnOnce(napi_env, *mut T) -> napi_status,
    ) -> NResult<T>
    where
        T: Default,
    {
        let mut out = T::default();
        check(f(self.0, &mut out), call)?;
        Ok(out)
    }

    pub fn string(self, s: &str) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env (constructor contract); `s` is valid UTF-8 of the given length,
        // which Node copies; `out` is a local.
        let st = unsafe {
            napi_create_string_utf8(self.0, s.as_ptr() as *const c_char, s.len(), &mut out)
        };
        check(st, "napi_create_string_utf8")?;
        Ok(out)
    }

    pub fn double(self, v: f64) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env; `out` is a local.
        let st = unsafe { napi_create_double(self.0, v, &mut out) };
        check(st, "napi_create_double")?;
        Ok(out)
    }

    pub fn uint32(self, v: u32) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env; `out` is a local.
        let st = unsafe { napi_create_uint32(self.0, v, &mut out) };
        check(st, "napi_create_uint32")?;
        Ok(out)
    }

    pub fn int32(self, v: i32) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env; `out` is a local.
        let st = unsafe { napi_create_int32(self.0, v, &mut out) };
        check(st, "napi_create_int32")?;
        Ok(out)
    }

    pub fn boolean(self, v: bool) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env; `out` is a local.
        let st = unsafe { napi_get_boolean(self.0, v, &mut out) };
        check(st, "napi_get_boolean")?;
        Ok(out)
    }

    pub fn undefined(self) -> NResult<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: live env; `out` is a local.
        let st = unsafe { napi_get_undefined(self.0, &mut out) };
        check(st, "napi_get_undefined")?;
        Ok(out)
    }

    /// `object[name] = value`.
    pub fn set_property(self, object: napi_value, name: &CStr, value: napi_value) -> NResult<()> {
        // SAFETY: live env; `name` is NUL-terminated; Node checks that `object` is an
        // object and reports a status otherwise.
        let st = unsafe { napi_set_named_property(self.0, object, name.as_ptr(), value) };
        check(st, "napi_set_named_property")
    }

    /// `object[name] = function`, calling `cb` (module registration).
    pub fn define_function(
        self,
        object: napi_value,
        name: &CStr,
        cb: napi_callback,
    ) -> NResult<()> {
        let mut f = ptr::null_mut();
        // SAFETY: live env; `name` is NUL-terminated and copied by Node; `cb` is a valid
        // `extern "C"` callback for the life of the process (a static function).
        let st = unsafe {
            napi_create_function(
                self.0,
                name.as_ptr(),
                NAPI_AUTO_LENGTH,
                cb,
                ptr::null_mut(),
                &mut f,
            )
        };
        check(st, "napi_create_function")?;
        self.set_property(object, name, f)
    }

    /// The JS type of `v`.
    pub fn type_of(self, v: napi_value) -> NResult<napi_valuetype> {
        // SAFETY: live env; `v` is a handle of this scope (Node rejects others with a status).
        self.make("napi_typeof", |env, out| unsafe {
            napi_typeof(env, v, out)
        })
    }
}

pub const MAX_SAFE_INTEGER: u64 = (1u64 << 53) - 1;

/// The arguments of one callback. Missing arguments read as `undefined` (Node fills the
/// tail of `argv` with undefined up to the capacity we pass).
pub struct Args<const N: usize> {
    pub env: Env,
    argv: [napi_value; N],
}

impl<const N: usize> Args<N> {
    /// # Safety
    /// `env`/`info` must be the ones passed to the running callback.
    pub unsafe fn get(env: Env, info: napi_callback_info) -> NResult<Self> {
        let mut argv = [ptr::null_mut(); N];
        if N > 0 {
            let mut argc = N;
            // SAFETY: live env and the current call's info (caller's contract); argv has
            // room for `argc` handles; this and data may be null per the API.
            let st = unsafe {
                napi_get_cb_info(
                    env.0,
                    info,
                    &mut argc,
                    argv.as_mut_ptr(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            check(st, "napi_get_cb_info")?;
        }
        Ok(Args { env, argv })
    }

    pub fn is_undefined(&self, i: usize) -> NResult<bool> {
        Ok(self.env.type_of(self.argv[i])? == NAPI_UNDEFINED)
    }

    /// A function (for callbacks thinsim keeps, like the error factory).
    pub fn function(&self, i: usize, name: &str) -> NResult<napi_value> {
        if self.env.type_of(self.argv[i])? != NAPI_FUNCTION {
            return Err(Failure::Invalid(format!("{name} must be a function")));
        }
        Ok(self.argv[i])
    }

    /// A JS number, any value.
    pub fn number(&self, i: usize, name: &str) -> NResult<f64> {
        let mut v = 0.0;
        // SAFETY: live env, handle of this scope; a non-number yields a status, not UB.
        match unsafe { napi_get_value_double(self.env.0, self.argv[i], &mut v) } {
            NAPI_OK => Ok(v),
            NAPI_NUMBER_EXPECTED => Err(Failure::Invalid(format!("{name} must be a number"))),
            status => Err(Failure::Napi {
                call: "napi_get_value_double",
                status,
            }),
        }
    }

    /// An integer number in `0..=max`, as u64.
    fn integer(&self, i: usize, name: &str, max: u64, what: &str) -> NResult<u64> {
        let v = self.number(i, name)?;
        if !(v >= 0.0 && v <= max as f64 && v.fract() == 0.0) {
            return Err(Failure::Invalid(format!("{name} must be {what}, got {v}")));
        }
        Ok(v as u64)
    }

    /// A non-negative safe integer (offsets, lengths, indices).
    pub fn index(&self, i: usize, name: &str) -> NResult<u64> {
        self.integer(i, name, MAX_SAFE_INTEGER, "a non-negative safe integer")
    }

    /// A file descriptor: an integer in 0..=2^31-1.
    pub fn fd(&self, i: usize, name: &str) -> NResult<i32> {
        Ok(self.integer(
            i,
            name,
            i32::MAX as u64,
            "a file descriptor (integer 0..2^31-1)",
        )? as i32)
    }

    /// An unsigned 32-bit integer (salts, crc registers).
    pub fn u32(&self, i: usize, name: &str) -> NResult<u32> {
        Ok(self.integer(i, name, u32::MAX as u64, "an integer in 0..2^32-1")? as u32)
    }

    pub fn boolean(&self, i: usize, name: &str) -> NResult<bool> {
        let mut v = false;
        // SAFETY: live env, handle of this scope; a non-boolean yields a status.
        match unsafe { napi_get_value_bool(self.env.0, self.argv[i], &mut v) } {
            NAPI_OK => Ok(v),
            NAPI_BOOLEAN_EXPECTED => Err(Failure::Invalid(format!("{name} must be a boolean"))),
            status => Err(Failure::Napi {
                call: "napi_get_value_bool",
                status,
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
        let v = self.argv[i];
        // SAFETY: live env, handle of this scope.
        let is_ta = self.env.make("napi_is_typedarray", |env, out| unsafe {
            napi_is_typedarray(env, v, out)
        })?;
        if !is_ta {
            return Err(Failure::Invalid(format!("{name} must be a {kind}")));
        }
        let (mut t, mut len, mut data) = (0, 0usize, ptr::null_mut());
        // SAFETY: live env; the value is a typed array; unused outputs may be null per the API.
        let st = unsafe {
            napi_get_typedarray_info(
                self.env.0,
                v,
                &mut t,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        check(st, "napi_get_typedarray_info")?;
        if t != want {
            return Err(Failure::Invalid(format!("{name} must be a {kind}")));
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

    /// A Float64Array of at least `min` elements, to be written through `F64Out::set`.
    pub fn f64_out(&self, i: usize, name: &str, min: usize) -> NResult<F64Out> {
        let (data, len) = self.typed(i, NAPI_FLOAT64_ARRAY, name, "Float64Array")?;
        if len < min {
            return Err(Failure::Invalid(format!(
                "{name} must have at least {min} elements, got {len}"
            )));
        }
        Ok(F64Out {
            ptr: data as *mut f64,
            len,
        })
    }
}

/// Data of a JS Uint8Array, valid for the duration of the current callback (JS cannot
/// run, so the backing store cannot be detached or moved while we hold it).
#[derive(Clone, Copy)]
pub struct RawBytes {
    ptr: *mut u8,
    pub len: usize,
}

impl RawBytes {
    /// # Safety
    /// Only within the callback that produced it, and no mutable slice of the same memory
    /// may be alive while the returned one is.
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: Node guarantees ptr..ptr+len is the live backing store (see the type
            // docs); no aliasing &mut exists (caller's contract).
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    /// # Safety
    /// Only within the callback that produced it, and no other slice of the same memory
    /// may be alive while the returned one is.
    pub unsafe fn as_mut_slice<'a>(self) -> &'a mut [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &mut []
        } else {
            // SAFETY: as above, plus exclusivity promised by the caller.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
        }
    }
}

/// A Float64Array argument to write results into. Written element by element through its
/// raw pointer, never as a slice, because it may view the same memory as a byte argument.
pub struct F64Out {
    ptr: *mut f64,
    len: usize,
}

impl F64Out {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `out[k] = v`. Panics if `k` is out of bounds.
    pub fn set(&self, k: usize, v: f64) {
        assert!(
            k < self.len,
            "F64Out index {k} out of bounds ({})",
            self.len
        );
        // SAFETY: k < len elements of a live Float64Array, whose data JS keeps 8-byte
        // aligned; no Rust reference to this memory is alive across the write.
        unsafe { self.ptr.add(k).write(v) }
    }
}

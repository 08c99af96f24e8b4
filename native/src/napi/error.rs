//! Failures and how they become JS errors.
//!
//! Contract: a callback body returns `Err(Failure)`; the trampoline (exports.rs) turns it
//! into exactly one thrown JS error with `Env::throw`, and async work rejects its promise
//! with `Env::make_error`. The error object comes from the JS error factory registered by
//! `Env::set_error_factory` (src/hot registers one that builds a `ThinError`, so no raw
//! native error reaches thinsim's callers); without a factory it is a plain `Error` with a
//! `code`. Every Node-API status is checked; where no JS caller exists to receive a
//! failure (finalizers, the last resort of settling a promise) it is printed to stderr by
//! `report_unthrowable`, never dropped silently.

use std::ffi::c_void;
use std::ptr;

use super::args::Env;
use super::sys::*;
use crate::errno;

/// Everything that can go wrong in a callback, before it is turned into a JS value.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Wrong argument type or value (caller misuse) -> code `E_INVALID`.
    Invalid(String),
    /// A syscall failed -> an errno-bearing I/O error (`details.errno`, `details.syscall`).
    Sys { syscall: &'static str, errno: i32 },
    /// The operation does not exist on this OS -> code `E_UNSUPPORTED`.
    Unsupported { operation: &'static str },
    /// A Rust panic was caught -> code `E_NATIVE`.
    Panic(String),
    /// A Node-API call failed -> code `E_NATIVE`, unless a JS exception is already pending,
    /// which then wins (it is the more precise report).
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

pub fn status_name(status: napi_status) -> &'static str {
    usize::try_from(status)
        .ok()
        .and_then(|i| STATUS_NAMES.get(i))
        .copied()
        .unwrap_or("unknown napi_status")
}

impl Failure {
    /// (kind for the factory, fallback `code`, message).
    fn describe(&self) -> (&'static str, String, String) {
        match self {
            Failure::Invalid(msg) => ("invalid", "E_INVALID".into(), msg.clone()),
            Failure::Sys { syscall, errno } => {
                let name = errno::name(*errno);
                let text = std::io::Error::from_raw_os_error(*errno);
                let message = format!("{syscall} failed: {name}: {text}");
                ("sys", name, message)
            }
            Failure::Unsupported { operation } => (
                "unsupported",
                "E_UNSUPPORTED".into(),
                format!(
                    "{operation} is not supported on this OS ({})",
                    std::env::consts::OS
                ),
            ),
            Failure::Panic(msg) => (
                "native",
                "E_NATIVE".into(),
                format!("thinsim native panic: {msg}"),
            ),
            Failure::Napi { call, status } => (
                "native",
                "E_NATIVE".into(),
                format!(
                    "thinsim native: {call} failed: {} (napi_status {status})",
                    status_name(*status)
                ),
            ),
        }
    }
}

/// Print a failure that has no JS caller to receive it.
pub fn report_unthrowable(context: &str, failure: &Failure) {
    let (_, code, message) = failure.describe();
    eprintln!("thinsim native: {context}: {message} [{code}]");
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

/// Per-env state kept with `napi_set_instance_data`: a strong reference to the factory.
struct InstanceData {
    factory: napi_ref,
}

/// Finalizer of the instance data, run when the env is torn down.
unsafe extern "C" fn free_instance_data(env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the Box<InstanceData> leaked in set_error_factory; Node calls this
    // finalizer once, on the JS thread, with that env.
    let data = unsafe { Box::from_raw(data as *mut InstanceData) };
    // SAFETY: the reference was made in this env and is deleted exactly once, here.
    let st = unsafe { napi_delete_reference(env, data.factory) };
    if let Err(f) = check(st, "napi_delete_reference") {
        report_unthrowable("freeing the error factory at exit", &f);
    }
}

impl Env {
    fn instance_data(self) -> NResult<*mut InstanceData> {
        let mut data = ptr::null_mut();
        // SAFETY: live env; `data` is a local out-pointer.
        let st = unsafe { napi_get_instance_data(self.raw(), &mut data) };
        check(st, "napi_get_instance_data")?;
        Ok(data as *mut InstanceData)
    }

    /// Register `factory(kind, message, errnoName?, syscall?) -> Error`, used for every
    /// error this addon raises in this env from now on. A second call replaces the first.
    pub fn set_error_factory(self, factory: napi_value) -> NResult<()> {
        let mut r = ptr::null_mut();
        // SAFETY: live env; `factory` is a handle of this scope; `r` is a local.
        let st = unsafe { napi_create_reference(self.raw(), factory, 1, &mut r) };
        check(st, "napi_create_reference")?;
        let existing = self.instance_data()?;
        if !existing.is_null() {
            // SAFETY: non-null instance data is always our InstanceData (only this function
            // sets it), alive until env teardown; the JS thread is the only user.
            let old = std::mem::replace(unsafe { &mut (*existing).factory }, r);
            // SAFETY: `old` was created in this env and is no longer stored anywhere.
            let st = unsafe { napi_delete_reference(self.raw(), old) };
            return check(st, "napi_delete_reference");
        }
        let data = Box::into_raw(Box::new(InstanceData { factory: r }));
        // SAFETY: live env; ownership of `data` passes to Node, which calls
        // free_instance_data once at teardown.
        let st = unsafe {
            napi_set_instance_data(
                self.raw(),
                data as *mut c_void,
                Some(free_instance_data),
                ptr::null_mut(),
            )
        };
        if let Err(f) = check(st, "napi_set_instance_data") {
            // SAFETY: Node did not take `data`; reclaim it and drop the reference we made.
            let data = unsafe { Box::from_raw(data) };
            // SAFETY: the reference was made above in this env and is stored nowhere else.
            let del = unsafe { napi_delete_reference(self.raw(), data.factory) };
            if let Err(g) = check(del, "napi_delete_reference") {
                report_unthrowable("cleaning up after napi_set_instance_data failed", &g);
            }
            return Err(f);
        }
        Ok(())
    }

    /// The registered factory, if any.
    fn factory(self) -> NResult<Option<napi_value>> {
        let data = self.instance_data()?;
        if data.is_null() {
            return Ok(None);
        }
        let mut f = ptr::null_mut();
        // SAFETY: live env; non-null instance data is our InstanceData (see above).
        let st = unsafe { napi_get_reference_value(self.raw(), (*data).factory, &mut f) };
        check(st, "napi_get_reference_value")?;
        Ok(Some(f))
    }

    /// Turn `failure` into a JS error object (not thrown). `Err` means even that failed;
    /// a JS exception may then be pending (e.g. the factory threw).
    pub fn make_error(self, failure: &Failure) -> NResult<napi_value> {
        let (kind, code, message) = failure.describe();
        let (kind_v, msg_v) = (self.string(kind)?, self.string(&message)?);
        if let Some(factory) = self.factory()? {
            let (errno_v, syscall_v) = match failure {
                Failure::Sys { syscall, errno } => {
                    (self.string(&errno::name(*errno))?, self.string(syscall)?)
                }
                _ => (self.undefined()?, self.undefined()?),
            };
            let argv = [kind_v, msg_v, errno_v, syscall_v];
            let (recv, mut out) = (self.undefined()?, ptr::null_mut());
            // SAFETY: live env; all handles belong to this scope; argv holds argv.len() values.
            let st = unsafe {
                napi_call_function(
                    self.raw(),
                    recv,
                    factory,
                    argv.len(),
                    argv.as_ptr(),
                    &mut out,
                )
            };
            check(st, "napi_call_function (error factory)")?;
            return Ok(out);
        }
        let code_v = self.string(&code)?;
        let mut err = ptr::null_mut();
        // SAFETY: live env; both strings are handles of this scope.
        let st = unsafe { napi_create_error(self.raw(), code_v, msg_v, &mut err) };
        check(st, "napi_create_error")?;
        Ok(err)
    }

    /// Whether a JS exception is pending. A failed query counts as "not pending", so the
    /// caller goes on to raise its own error rather than none.
    fn exception_pending(self) -> bool {
        let mut pending = false;
        // SAFETY: live env; `pending` is a local.
        let st = unsafe { napi_is_exception_pending(self.raw(), &mut pending) };
        st == NAPI_OK && pending
    }

    /// Take the pending JS exception, if any (so it can reject a promise instead).
    pub fn take_exception(self) -> Option<napi_value> {
        if !self.exception_pending() {
            return None;
        }
        let mut e = ptr::null_mut();
        // SAFETY: live env; `e` is a local.
        let st = unsafe { napi_get_and_clear_last_exception(self.raw(), &mut e) };
        (st == NAPI_OK && !e.is_null()).then_some(e)
    }

    /// Throw `failure` unless a JS exception is already pending (a pending exception is
    /// the more precise report, e.g. the factory itself threw).
    pub fn throw(self, failure: &Failure) {
        if self.exception_pending() {
            return;
        }
        let thrown = match self.make_error(failure) {
            // SAFETY: live env; `err` is a handle of this scope.
            Ok(err) => check(unsafe { napi_throw(self.raw(), err) }, "napi_throw"),
            Err(f) => Err(f),
        };
        if let Err(why) = thrown {
            if self.exception_pending() {
                return;
            }
            // Last resort: both strings are static and NUL-terminated.
            // SAFETY: live env; static C strings.
            let st = unsafe {
                napi_throw_error(
                    self.raw(),
                    c"E_NATIVE".as_ptr(),
                    c"thinsim native: could not raise an error".as_ptr(),
                )
            };
            if let Err(f) = check(st, "napi_throw_error") {
                report_unthrowable("raising an error", &why);
                report_unthrowable("raising an error (last resort)", &f);
            }
        }
    }
}

//! Raising failures as JS errors: the error factory (per env), `Env::make_error`,
//! `Env::throw` and `Env::take_exception`. See error.rs for the contract; this part needs
//! `Env` (args.rs) and `Failure` (error.rs), and neither of those needs it.

use std::ffi::c_void;
use std::ptr;

use super::args::Env;
use super::error::{check, report_unthrowable, Failure, NResult};
use super::sys::*;
use crate::errno;

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

//! Work on the libuv thread pool, settled as a promise.
//!
//! Contract: `Env::spawn_promise` runs `work` on a pool thread (no Node-API there) and
//! settles the returned promise on the JS thread: resolved with `to_js(result)`, or
//! rejected with the error `Env::make_error` builds for the failure (or, if building it
//! threw, with that exception). A panic in `work` rejects with E_NATIVE. Every status is
//! checked; a failure to settle at all is reported on stderr (the promise has no other
//! way to tell anyone).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::args::Env;
use super::error::{check, panic_message, report_unthrowable, Failure, NResult};
use super::sys::*;

type Work<T> = Box<dyn FnOnce() -> NResult<T> + Send>;

/// One queued job, owned by Node (through the async work's data pointer) from queueing
/// to completion.
struct Job<T> {
    work: Option<Work<T>>,
    result: Option<NResult<T>>,
    to_js: fn(Env, T) -> NResult<napi_value>,
    deferred: napi_deferred,
    handle: napi_async_work,
}

/// Runs on a libuv pool thread: no Node-API calls allowed here.
unsafe extern "C" fn execute<T>(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the Job leaked in spawn_promise; from queueing until `complete`
    // runs, only this pool thread touches it.
    let job = unsafe { &mut *(data as *mut Job<T>) };
    let result = match job.work.take() {
        Some(work) => match catch_unwind(AssertUnwindSafe(work)) {
            Ok(r) => r,
            Err(p) => Err(Failure::Panic(panic_message(&*p))),
        },
        None => Err(Failure::Panic("async work ran twice".into())),
    };
    job.result = Some(result);
}

/// Back on the JS thread: settle the promise and free the job.
unsafe extern "C" fn complete<T>(env: napi_env, status: napi_status, data: *mut c_void) {
    // SAFETY: the pool thread is done with the job; ownership comes back exactly once.
    let mut job = unsafe { Box::from_raw(data as *mut Job<T>) };
    // SAFETY: Node passes the live env of this completion.
    let env = unsafe { Env::from_raw(env) };
    let settled = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: live env; the work was created in it and is deleted exactly once, here.
        let st = unsafe { napi_delete_async_work(env.raw(), job.handle) };
        let deleted = check(st, "napi_delete_async_work");
        let outcome = if status == NAPI_CANCELLED {
            Err(Failure::Napi {
                call: "async work (cancelled)",
                status,
            })
        } else {
            check(status, "async work").and_then(|()| {
                deleted?;
                job.result.take().unwrap_or(Err(Failure::Panic(
                    "async work finished without a result".into(),
                )))
            })
        };
        settle(env, job.deferred, outcome.and_then(|v| (job.to_js)(env, v)))
    }));
    let failure = match settled {
        Ok(Ok(())) => return,
        Ok(Err(f)) => f,
        Err(p) => Failure::Panic(panic_message(&*p)),
    };
    // Could not settle normally: reject with E_NATIVE so the promise does not hang.
    let last = error_value(env, &failure).and_then(|e| {
        // SAFETY: live env; the deferred has not been settled (every path above that
        // settles it returned Ok); `e` is a handle of this scope.
        let st = unsafe { napi_reject_deferred(env.raw(), job.deferred, e) };
        check(st, "napi_reject_deferred")
    });
    if let Err(f) = last {
        report_unthrowable(
            "a promise of the native addon could not be settled",
            &failure,
        );
        report_unthrowable("and rejecting it failed too", &f);
    }
}

/// The rejection value for `failure`: its error object, or, if building that threw (the
/// factory is JS), the exception it threw, which must not stay pending after a completion.
fn error_value(env: Env, failure: &Failure) -> NResult<napi_value> {
    env.make_error(failure)
        .or_else(|f| env.take_exception().ok_or(f))
}

/// Resolve with `value` or reject with the error for the failure. `Err` means the
/// deferred is still unsettled.
fn settle(env: Env, deferred: napi_deferred, value: NResult<napi_value>) -> NResult<()> {
    match value {
        Ok(v) => {
            // SAFETY: live env; the deferred is unsettled; `v` is a handle of this scope.
            let st = unsafe { napi_resolve_deferred(env.raw(), deferred, v) };
            check(st, "napi_resolve_deferred")
        }
        Err(failure) => {
            let error = error_value(env, &failure)?;
            // SAFETY: as above.
            let st = unsafe { napi_reject_deferred(env.raw(), deferred, error) };
            check(st, "napi_reject_deferred")
        }
    }
}

impl Env {
    /// Run `work` on the libuv pool; a promise of `to_js(result)`. `name` names the async
    /// resource (seen by async_hooks).
    pub fn spawn_promise<T: Send + 'static>(
        self,
        name: &str,
        work: impl FnOnce() -> NResult<T> + Send + 'static,
        to_js: fn(Env, T) -> NResult<napi_value>,
    ) -> NResult<napi_value> {
        let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: live env; out-pointers are locals.
        let st = unsafe { napi_create_promise(self.raw(), &mut deferred, &mut promise) };
        check(st, "napi_create_promise")?;
        let job = Box::into_raw(Box::new(Job::<T> {
            work: Some(Box::new(work)),
            result: None,
            to_js,
            deferred,
            handle: ptr::null_mut(),
        }));
        let queued = self.string(name).and_then(|name_v| {
            // SAFETY: live env; `job` is a valid Job<T> that the callbacks are instantiated
            // for; its `handle` field is written by Node before this returns.
            let st = unsafe {
                napi_create_async_work(
                    self.raw(),
                    ptr::null_mut(),
                    name_v,
                    Some(execute::<T>),
                    Some(complete::<T>),
                    job as *mut c_void,
                    &mut (*job).handle,
                )
            };
            check(st, "napi_create_async_work")?;
            // SAFETY: live env; the work was just created.
            let st = unsafe { napi_queue_async_work(self.raw(), (*job).handle) };
            check(st, "napi_queue_async_work").inspect_err(|_| {
                // SAFETY: not queued, so neither callback will run; delete the work.
                let del = unsafe { napi_delete_async_work(self.raw(), (*job).handle) };
                if let Err(f) = check(del, "napi_delete_async_work") {
                    report_unthrowable("cleaning up unqueued async work", &f);
                }
            })
        });
        if let Err(f) = queued {
            // SAFETY: the job was never handed to a queued work item; we still own it.
            drop(unsafe { Box::from_raw(job) });
            // The promise is dropped unsettled and unreachable; the call throws instead.
            return Err(f);
        }
        Ok(promise)
    }
}

//! Buffers over memory Rust allocated: used for aligned buffers (O_DIRECT).
//!
//! Contract: `Env::external_buffer` hands a zeroed allocation of a given `Layout` to JS as a
//! Buffer of `size` bytes; the Buffer's finalizer frees it with the same layout. V8 is told
//! about the memory (so GC pressure accounts for it) before the allocation and untold after
//! the free, so the accounting balances even when a step fails.

use std::alloc::Layout;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::args::Env;
use super::error::{check, report_unthrowable, status_name, Failure, NResult};
use super::sys::*;
use crate::chunk;

impl Env {
    /// Tell V8 about `delta` bytes of memory it cannot see.
    fn adjust_external_memory(self, delta: i64) -> NResult<()> {
        let mut total = 0i64;
        // SAFETY: live env; `total` is a local.
        let st = unsafe { napi_adjust_external_memory(self.raw(), delta, &mut total) };
        check(st, "napi_adjust_external_memory")
    }

    /// A zero-filled Buffer of `size` bytes (`size <= layout.size()`) at an address with
    /// `layout.align()`; `Err(Failure::Invalid)` when memory cannot be had or Node refuses
    /// the size.
    pub fn external_buffer(self, size: usize, layout: Layout) -> NResult<napi_value> {
        debug_assert!(size <= layout.size());
        let bytes = i64::try_from(layout.size())
            .map_err(|_| Failure::Invalid(format!("{size} bytes is too large")))?;
        self.adjust_external_memory(bytes)?;
        // SAFETY: the layout has a non-zero size (chunk::aligned_layout guarantees it);
        // ownership passes to the Buffer's finalizer below, or is reclaimed on failure.
        let data = unsafe { chunk::alloc_aligned(layout) };
        if data.is_null() {
            self.adjust_external_memory(-bytes)?;
            return Err(Failure::Invalid(format!(
                "cannot allocate {size} bytes aligned to {}: out of memory",
                layout.align()
            )));
        }
        let hint = Box::into_raw(Box::new(layout));
        let mut out = ptr::null_mut();
        // SAFETY: live env; `data` is valid for `size` bytes until the finalizer frees it,
        // and `hint` is the matching layout the finalizer needs.
        let st = unsafe {
            napi_create_external_buffer(
                self.raw(),
                size,
                data as *mut c_void,
                Some(free_buffer),
                hint as *mut c_void,
                &mut out,
            )
        };
        if st != NAPI_OK {
            // SAFETY: Node refused the memory, so the finalizer will never run; free it here.
            unsafe { chunk::free_aligned(data, *Box::from_raw(hint)) };
            self.adjust_external_memory(-bytes)?;
            // Node refuses sizes past buffer.constants.MAX_LENGTH: a bad size, like the twin's.
            return Err(Failure::Invalid(format!(
                "cannot create a Buffer of {size} bytes ({})",
                status_name(st)
            )));
        }
        Ok(out)
    }
}

/// Finalizer of an external buffer: free with the layout it was allocated with.
unsafe extern "C" fn free_buffer(env: napi_env, data: *mut c_void, hint: *mut c_void) {
    let freed = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `hint` is the Box<Layout> leaked in external_buffer and `data` the
        // matching allocation; Node calls this finalizer once.
        let layout = unsafe { Box::from_raw(hint as *mut Layout) };
        // SAFETY: as above: allocated by alloc_aligned with this very layout, not yet freed.
        unsafe { chunk::free_aligned(data as *mut u8, *layout) };
        // SAFETY: Node passes the live env of this finalizer.
        let env = unsafe { Env::from_raw(env) };
        // external_buffer only succeeds with a size that fits in i64.
        env.adjust_external_memory(-(layout.size() as i64))
    }));
    // No JS caller exists during a finalizer: report instead of throwing.
    match freed {
        Ok(Ok(())) => {}
        Ok(Err(f)) => report_unthrowable("freeing an aligned buffer", &f),
        Err(_) => report_unthrowable(
            "freeing an aligned buffer",
            &Failure::Panic("in the finalizer".into()),
        ),
    }
}

//! Hand-declared Node-API: the types and C functions thinsim uses, nothing else.
//!
//! Why hand-declared: crates.io is unreachable, so `napi-sys` is not available. The C ABI
//! below follows `js_native_api_types.h` / `node_api_types.h` of Node 20 (Node-API 8).
//! Handles are opaque pointers and every enum is a C int. The `napi_*` symbols stay
//! undefined in the shared object and are resolved from the `node` executable when the
//! addon is loaded. Every function returns a `napi_status`; callers must check it (see
//! `check` in error.rs): Node-API never throws by itself.

// The C names are kept so each declaration can be checked against Node's headers.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

macro_rules! opaque {
    ($($name:ident => $ptr:ident),* $(,)?) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
        pub type $ptr = *mut $name;
    )*};
}

opaque! {
    napi_env__ => napi_env,
    napi_value__ => napi_value,
    napi_callback_info__ => napi_callback_info,
    napi_deferred__ => napi_deferred,
    napi_async_work__ => napi_async_work,
    napi_ref__ => napi_ref,
}

pub type napi_status = i32;
pub const NAPI_OK: napi_status = 0;
pub const NAPI_NUMBER_EXPECTED: napi_status = 6;
pub const NAPI_BOOLEAN_EXPECTED: napi_status = 7;
pub const NAPI_CANCELLED: napi_status = 11;

/// `napi_status` names in enum order (Node 20, plus 23 from later versions), for messages.
pub const STATUS_NAMES: &[&str] = &[
    "napi_ok",
    "napi_invalid_arg",
    "napi_object_expected",
    "napi_string_expected",
    "napi_name_expected",
    "napi_function_expected",
    "napi_number_expected",
    "napi_boolean_expected",
    "napi_array_expected",
    "napi_generic_failure",
    "napi_pending_exception",
    "napi_cancelled",
    "napi_escape_called_twice",
    "napi_handle_scope_mismatch",
    "napi_callback_scope_mismatch",
    "napi_queue_full",
    "napi_closing",
    "napi_bigint_expected",
    "napi_date_expected",
    "napi_arraybuffer_expected",
    "napi_detachable_arraybuffer_expected",
    "napi_would_deadlock",
    "napi_no_external_buffers_allowed",
    "napi_cannot_run_js",
];

pub type napi_valuetype = i32;
pub const NAPI_UNDEFINED: napi_valuetype = 0;
pub const NAPI_FUNCTION: napi_valuetype = 7;

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

// All of these exist since Node-API version 6 or earlier.
extern "C" {
    // --- module setup and calls
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
    pub fn napi_call_function(
        env: napi_env,
        recv: napi_value,
        func: napi_value,
        argc: usize,
        argv: *const napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_set_instance_data(
        env: napi_env,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
    ) -> napi_status;
    pub fn napi_get_instance_data(env: napi_env, data: *mut *mut c_void) -> napi_status;
    pub fn napi_create_reference(
        env: napi_env,
        value: napi_value,
        initial_refcount: u32,
        result: *mut napi_ref,
    ) -> napi_status;
    pub fn napi_delete_reference(env: napi_env, reference: napi_ref) -> napi_status;
    pub fn napi_get_reference_value(
        env: napi_env,
        reference: napi_ref,
        result: *mut napi_value,
    ) -> napi_status;

    // --- reading arguments
    pub fn napi_typeof(
        env: napi_env,
        value: napi_value,
        result: *mut napi_valuetype,
    ) -> napi_status;
    pub fn napi_get_value_double(env: napi_env, value: napi_value, result: *mut f64)
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

    // --- making values
    pub fn napi_get_undefined(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_get_boolean(env: napi_env, value: bool, result: *mut napi_value) -> napi_status;
    pub fn napi_create_double(env: napi_env, value: f64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_int32(env: napi_env, value: i32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_uint32(env: napi_env, value: u32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_string_utf8(
        env: napi_env,
        str_: *const c_char,
        length: usize,
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

    // --- errors
    pub fn napi_create_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_throw(env: napi_env, error: napi_value) -> napi_status;
    pub fn napi_throw_error(env: napi_env, code: *const c_char, msg: *const c_char) -> napi_status;
    pub fn napi_is_exception_pending(env: napi_env, result: *mut bool) -> napi_status;
    pub fn napi_get_and_clear_last_exception(env: napi_env, result: *mut napi_value)
        -> napi_status;

    // --- promises and work on the libuv pool
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

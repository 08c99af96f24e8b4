//! thinsim native hot paths: registration glue only.
//!
//! The work lives in plain Rust modules (`bitmap`, `crc32c`, `chunk`) that `cargo test`
//! exercises directly. The Node-API layer (`napi`, `exports`) is compiled only outside
//! test builds: its `napi_*` symbols are resolved from the `node` executable at load
//! time, and a test executable has no such symbols to link against.

pub mod bitmap;
pub mod chunk;
pub mod crc32c;

#[cfg(not(test))]
mod exports;
#[cfg(not(test))]
mod napi;

#[cfg(not(test))]
use napi::{napi_env, napi_value};

/// Module entry point looked up by Node when the `.node` file is loaded.
///
/// # Safety
/// Called by Node with a live env and the module's `exports` object.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    use napi::*;
    let register = || -> NResult<()> {
        for (name, cb) in exports::EXPORTS {
            let mut f = std::ptr::null_mut();
            check(
                napi_create_function(
                    env,
                    name.as_ptr(),
                    NAPI_AUTO_LENGTH,
                    *cb,
                    std::ptr::null_mut(),
                    &mut f,
                ),
                "napi_create_function",
            )?;
            check(
                napi_set_named_property(env, exports, name.as_ptr(), f),
                "napi_set_named_property",
            )?;
        }
        Ok(())
    };
    match std::panic::catch_unwind(register) {
        Ok(Ok(())) => exports,
        Ok(Err(f)) => {
            throw(env, &f);
            std::ptr::null_mut()
        }
        Err(p) => {
            throw(env, &Failure::Panic(panic_message(&*p)));
            std::ptr::null_mut()
        }
    }
}

/// Node-API version this addon is built against. 8 is what Node 20 offers without
/// experimental flags; a version above the runtime's (9 on Node 20) crashes the load.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    8
}

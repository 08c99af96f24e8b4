//! thinsim native hot paths: registration glue only.
//!
//! The work lives in plain Rust modules (`bitmap`, `crc32c`, `chunk`, `errno`, `leaf`) that
//! `cargo test` exercises directly. The Node-API layer (`napi`, `exports`) is compiled
//! only outside test builds: its `napi_*` symbols are resolved from the `node` executable
//! at load time, and a test executable has no such symbols to link against.

// Every unsafe operation sits in its own `unsafe {}` block with a `// SAFETY:` comment,
// also inside `unsafe fn`s (`npm run lint:native`, i.e. cargo clippy, checks the comments).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bitmap;
pub mod chunk;
pub mod crc32c;
pub mod errno;
pub mod leaf;

#[cfg(not(test))]
mod exports;
#[cfg(not(test))]
mod napi;

/// Module entry point looked up by Node when the `.node` file is loaded.
///
/// # Safety
/// Called by Node with a live env and the module's `exports` object.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(
    env: napi::napi_env,
    exports: napi::napi_value,
) -> napi::napi_value {
    // SAFETY: Node passes the env of this module load (the function's contract).
    let env = unsafe { napi::Env::from_raw(env) };
    let register = || -> napi::NResult<()> {
        for (name, cb) in exports::EXPORTS {
            env.define_function(exports, name, *cb)?;
        }
        Ok(())
    };
    let failure = match std::panic::catch_unwind(register) {
        Ok(Ok(())) => return exports,
        Ok(Err(f)) => f,
        Err(p) => napi::Failure::Panic(napi::panic_message(&*p)),
    };
    env.throw(&failure);
    std::ptr::null_mut()
}

/// Node-API version this addon is built against. 8 is what Node 20 offers without
/// experimental flags; a version above the runtime's (9 on Node 20) crashes the load.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    8
}

//! The Node-API layer, in six parts each readable on its own:
//!
//! * `sys`    - the hand-declared C API (types, constants, extern functions);
//! * `error`  - `Failure` and status checks;
//! * `throw`  - turning failures into thrown JS errors (the error factory);
//! * `args`   - `Env` (making values) and `Args` (reading and validating arguments);
//! * `task`   - work on the libuv pool settled as a promise;
//! * `buffer` - Buffers over Rust allocations (aligned buffers).
//!
//! Only this module calls Node-API; `exports.rs` uses its safe surface. It is compiled
//! only outside `cargo test`: the `napi_*` symbols are resolved from the `node` executable
//! at load time, and a test executable has no such symbols to link against.

mod args;
mod buffer;
mod error;
mod sys;
mod task;
mod throw;

pub use args::{Args, Env, MAX_SAFE_INTEGER};
pub use error::{panic_message, Failure, NResult};
pub use sys::{napi_callback, napi_callback_info, napi_env, napi_value};

//! Failures: what can go wrong in a callback, and how each is described. Turning them
//! into JS errors is `throw.rs`'s (which needs `Env`; this file needs nothing of it, so
//! `args.rs` can use `check` without an import circle).
//!
//! Contract: a callback body returns `Err(Failure)`; the trampoline (exports.rs) turns it
//! into exactly one thrown JS error with `Env::throw`, and async work rejects its promise
//! with `Env::make_error`. The error object comes from the JS error factory registered by
//! `Env::set_error_factory` (src/hot registers one that builds a `ThinError`, so no raw
//! native error reaches thinsim's callers); without a factory it is a plain `Error` with a
//! `code`. Every Node-API status is checked; where no JS caller exists to receive a
//! failure (finalizers, the last resort of settling a promise) it is printed to stderr by
//! `report_unthrowable`, never dropped silently.

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
    pub(super) fn describe(&self) -> (&'static str, String, String) {
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

/**
 * How hot-path failures become ThinErrors, for the addon and the twin alike.
 *
 * Contract: nothing but a ThinError leaves src/hot. Caller misuse (a wrong argument type or
 * value) is E_INVALID. A failed syscall is an errno-bearing I/O error whose code follows
 * the errno the way ioError (src/errors.ts) does for the rest of thinsim (ENOSPC and
 * EDQUOT -> ENOSPC, ENOENT -> E_NOT_FOUND, anything else -> E_IO), with
 * `details.errno` (the errno name, e.g. 'EBADF') and `details.syscall`. An operation the
 * OS lacks is E_UNSUPPORTED; a fault inside the addon (a Rust panic, a failed Node-API
 * call) is E_NATIVE. The addon builds its errors by calling `nativeErrorFactory`, which
 * src/hot registers when it loads the addon; the twin calls the same helpers.
 */

import { ThinError, type ThinErrorCode } from '../errors';

/** The ThinError code for a failed syscall's errno name. */
export function codeForErrno(errno: string): ThinErrorCode {
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'ENOSPC';
    case 'ENOENT':
      return 'E_NOT_FOUND';
    default:
      return 'E_IO';
  }
}

/** Caller misuse: a wrong argument type or value. */
export function invalidArgument(message: string): ThinError {
  return new ThinError('E_INVALID', message);
}

/** A failed syscall, by errno name. */
export function syscallError(errno: string, syscall: string | undefined, message: string, cause?: unknown): ThinError {
  const details = syscall === undefined ? { errno } : { errno, syscall };
  return new ThinError(codeForErrno(errno), message, details, cause === undefined ? undefined : { cause });
}

/**
 * A Node fs error (from the twin's fs calls) as a ThinError. Anything without an errno
 * code is not an OS failure and is wrapped as E_IO with the original as the cause.
 */
export function fromFsError(e: unknown): ThinError {
  if (e instanceof ThinError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string') return syscallError(err.code, err.syscall, err.message, e);
  return new ThinError('E_IO', `I/O failed: ${err?.message ?? String(e)}`, {}, { cause: e });
}

/** What the addon reports (native/src/napi/error.rs, Failure::describe). */
export type NativeErrorKind = 'invalid' | 'sys' | 'unsupported' | 'native';

/**
 * The error factory handed to the addon (`setErrorFactory`): every error the addon raises
 * is built here. Never throws (an unknown kind is an E_NATIVE error itself).
 */
export function nativeErrorFactory(kind: NativeErrorKind, message: string, errno?: string, syscall?: string): ThinError {
  switch (kind) {
    case 'invalid':
      return invalidArgument(message);
    case 'sys':
      return syscallError(errno ?? 'EIO', syscall, message);
    case 'unsupported':
      return new ThinError('E_UNSUPPORTED', message);
    case 'native':
      return new ThinError('E_NATIVE', message);
    default:
      return new ThinError('E_NATIVE', `thinsim native: unknown error kind ${String(kind)}: ${message}`);
  }
}

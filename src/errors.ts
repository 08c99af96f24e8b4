/**
 * Errors: every failure thinsim reports is a ThinError with a stable string `code`.
 *
 * Contract: absence is a return value (undefined / -1); corruption, misuse and
 * resource exhaustion throw. `code` never changes meaning once shipped, so callers
 * and the CLI's exit-status mapping may switch on it. `details` carries structured
 * context (block number, tree path, device id) so a message is never the only
 * place a fact lives.
 */

export type ThinErrorCode =
  /** A metadata block failed validation (checksum, blocknr, magic, node header). */
  | 'E_CHECKSUM'
  /** The metadata on disk is damaged (a structure that cannot be what the format allows). */
  | 'E_CORRUPT'
  /**
   * thinsim broke one of its own invariants (a bug, not damage on disk): the
   * operation stopped before it could commit anything wrong.
   */
  | 'E_INVARIANT'
  /** Bad argument from a caller or a user (size string, id out of range, ...). */
  | 'E_INVALID'
  /** A numeric value does not fit where it must go (e.g. > 2^53 in a number). */
  | 'E_RANGE'
  /** Data or metadata space exhausted. */
  | 'ENOSPC'
  | 'E_NO_METADATA_SPACE'
  /** Every thin device id (24 bits) is taken: delete a device to free one. */
  | 'E_NO_DEVICE_ID'
  /** A thin device id that does not exist / already exists. */
  | 'E_NO_DEVICE'
  | 'E_DEVICE_EXISTS'
  /** set_transaction_id compare-and-swap mismatch. */
  | 'E_TRANSACTION_MISMATCH'
  /** Metadata snapshot already held / not held. */
  | 'E_METADATA_SNAP_EXISTS'
  | 'E_NO_METADATA_SNAP'
  /** The pool is closing or closed: the request was not started (NBD: ESHUTDOWN). */
  | 'E_CLOSED'
  /** Another process holds the pool open read-write (its pool.lock): only the pool lock. */
  | 'E_POOL_BUSY'
  /** A layer or device is mounted (or held by a process) and cannot be changed or torn down now. */
  | 'E_MOUNTED'
  /** The address a server should listen on (TCP host:port, unix socket path) is taken. */
  | 'E_ADDR_IN_USE'
  /** The pool (or its metadata) is read-only / needs_check. */
  | 'E_READ_ONLY'
  /** Input parse errors (XML, JSON, CLI, a tar or gzip stream that is not one, or truncated). */
  | 'E_PARSE'
  /** Underlying OS I/O failure. */
  | 'E_IO'
  /** The native addon is missing, or a native call was misused. */
  | 'E_NATIVE'
  /** A file or device that should exist does not. */
  | 'E_NOT_FOUND'
  /** Something is too small to hold what it must (metadata file < 4 KiB, ...). */
  | 'E_TOO_SMALL'
  /** An operation that is valid but not supported (e.g. shrinking a pool). */
  | 'E_UNSUPPORTED';

export interface ThinErrorDetails {
  block?: number;
  kind?: string;
  path?: string;
  device?: number;
  file?: string;
  line?: number;
  [key: string]: unknown;
}

export class ThinError extends Error {
  readonly code: ThinErrorCode;
  readonly details: ThinErrorDetails;

  constructor(code: ThinErrorCode, message: string, details: ThinErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ThinError';
    this.code = code;
    this.details = details;
  }
}

export function isThinError(e: unknown, code?: ThinErrorCode): e is ThinError {
  return e instanceof ThinError && (code === undefined || e.code === code);
}

/** Wrap a Node fs error (ENOENT, EACCES, ...) as a ThinError naming the file and the action. */
export function ioError(action: string, file: string, err: unknown): ThinError {
  const e = err as NodeJS.ErrnoException;
  const code: ThinErrorCode = e && e.code === 'ENOENT' ? 'E_NOT_FOUND' : e && e.code === 'ENOSPC' ? 'ENOSPC' : 'E_IO';
  const why = e && e.message ? e.message : String(err);
  return new ThinError(code, `cannot ${action} ${file}: ${why}`, { file, errno: e?.code }, { cause: err });
}

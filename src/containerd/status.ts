/**
 * ThinError -> gRPC status, in the codes containerd's errdefs turns back into its
 * error kinds (errdefs.FromGRPC): NotFound, AlreadyExists, FailedPrecondition,
 * InvalidArgument, Unavailable, Unimplemented, ResourceExhausted.
 *
 * Contract:
 * - E_NOT_FOUND, E_NO_DEVICE -> NOT_FOUND; E_DEVICE_EXISTS -> ALREADY_EXISTS;
 *   E_INVALID, E_PARSE, E_RANGE -> INVALID_ARGUMENT; E_POOL_BUSY, E_READ_ONLY ->
 *   FAILED_PRECONDITION; ENOSPC, E_NO_METADATA_SPACE -> RESOURCE_EXHAUSTED;
 *   E_CLOSED -> UNAVAILABLE; E_UNSUPPORTED -> UNIMPLEMENTED; anything else ->
 *   UNKNOWN (containerd keeps the message).
 * - A ThinError made by precondition() is FAILED_PRECONDITION whatever its code
 *   (containerd's rules say "has children", "not active" are preconditions, while
 *   thinsim's CLI calls them bad input).
 * - The message is the ThinError's message with its code: "E_NOT_FOUND: ...".
 */
import { status as Status } from '@grpc/grpc-js';
import { ThinError, isThinError } from '../errors';

const PRECONDITION = 'FAILED_PRECONDITION';

/** A ThinError (code E_INVALID for the CLI) that containerd sees as FailedPrecondition. */
export function precondition(message: string, details: Record<string, unknown> = {}): ThinError {
  return new ThinError('E_INVALID', message, { ...details, grpcStatus: PRECONDITION });
}

export function grpcCode(e: unknown): Status {
  if (!isThinError(e)) return Status.UNKNOWN;
  if (e.details.grpcStatus === PRECONDITION) return Status.FAILED_PRECONDITION;
  switch (e.code) {
    case 'E_NOT_FOUND': case 'E_NO_DEVICE': return Status.NOT_FOUND;
    case 'E_DEVICE_EXISTS': return Status.ALREADY_EXISTS;
    case 'E_INVALID': case 'E_PARSE': case 'E_RANGE': return Status.INVALID_ARGUMENT;
    case 'E_POOL_BUSY': case 'E_READ_ONLY': return Status.FAILED_PRECONDITION;
    case 'ENOSPC': case 'E_NO_METADATA_SPACE': return Status.RESOURCE_EXHAUSTED;
    case 'E_CLOSED': return Status.UNAVAILABLE;
    case 'E_UNSUPPORTED': return Status.UNIMPLEMENTED;
    default: return Status.UNKNOWN;
  }
}

export function toServiceError(e: unknown): { code: Status; details: string } {
  const msg = isThinError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  return { code: grpcCode(e), details: msg };
}

/**
 * Transmission-phase commands against the pool: validation and execution.
 *
 * Contract:
 * - `validate` checks a request against the protocol and the export (command type, flags
 *   allowed for that command, read-only, range, negotiated features) and returns the
 *   error to send, or undefined. It is pure.
 * - `execute` runs a validated request through the pool's public API and never throws:
 *   every failure becomes an Outcome with an NBD error value and a message.
 * - Writes, trims and zeroing with FUA are flushed (data sync + metadata commit) before
 *   the outcome resolves; FLUSH is pool.flush(), which commits the whole pool, so it
 *   covers writes completed on every connection (the server sets CAN_MULTI_CONN).
 * - WRITE_ZEROES without NO_HOLE unmaps whole chunks (they read as zeros) and zeroes
 *   partial ones; with NO_HOLE it writes zeros. FAST_ZERO fails with ENOTSUP, before
 *   touching anything, whenever zeroing would mean writing data.
 */
import { isThinError } from '../errors';
import type { Bytes, Pool } from '../pool/pool';
import type { Export } from './exports';
import { Cmd, CmdFlag, Errno, Extent, Request, State } from './protocol';

/** Largest READ or WRITE payload (advertised as the maximum block size). */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Most extents in one block status reply (the client asks again for the rest). */
export const MAX_EXTENTS = 65536;
/** Zeros written per pool request when NO_HOLE asks for written zeros. */
const ZERO_PIECE = 1024 * 1024;
const ZEROS = Buffer.alloc(ZERO_PIECE);

export interface Target {
  pool: Pool;
  exp: Export;
  structured: boolean;
  /** Id of the negotiated base:allocation context, if any. */
  allocationContext: number | undefined;
}

export interface Outcome {
  /** 0 on success, else an NBD error value. */
  error: number;
  message?: string;
  data?: Buffer;
  extents?: Extent[];
}

const OK: Outcome = { error: 0 };

const ALLOWED: Record<number, number> = {
  [Cmd.READ]: CmdFlag.FUA | CmdFlag.DF,
  [Cmd.WRITE]: CmdFlag.FUA,
  [Cmd.FLUSH]: CmdFlag.FUA,
  [Cmd.TRIM]: CmdFlag.FUA,
  [Cmd.WRITE_ZEROES]: CmdFlag.FUA | CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO,
  [Cmd.BLOCK_STATUS]: CmdFlag.FUA | CmdFlag.REQ_ONE,
};

const NAMES: Record<number, string> = {
  [Cmd.READ]: 'READ', [Cmd.WRITE]: 'WRITE', [Cmd.FLUSH]: 'FLUSH', [Cmd.TRIM]: 'TRIM',
  [Cmd.WRITE_ZEROES]: 'WRITE_ZEROES', [Cmd.BLOCK_STATUS]: 'BLOCK_STATUS', [Cmd.DISC]: 'DISC', [Cmd.CACHE]: 'CACHE',
};

export function commandName(type: number): string {
  return NAMES[type] ?? `command ${type}`;
}

function isWrite(type: number): boolean {
  return type === Cmd.WRITE || type === Cmd.TRIM || type === Cmd.WRITE_ZEROES;
}

export function validate(req: Request, t: Target): Outcome | undefined {
  const name = commandName(req.type);
  const allowed = ALLOWED[req.type];
  if (allowed === undefined) return fail(Errno.EINVAL, `${name} is not supported`);
  if (req.flags & ~allowed) return fail(Errno.EINVAL, `${name}: flags 0x${(req.flags & ~allowed).toString(16)} are not valid for this command`);
  if (req.flags & CmdFlag.DF && !t.structured) return fail(Errno.EINVAL, 'READ: DF needs structured replies');
  if (isWrite(req.type) && t.exp.readOnly) return fail(Errno.EPERM, `${name}: export "${t.exp.name}" is read-only`);
  if (req.type === Cmd.FLUSH) return undefined;
  if (req.type === Cmd.BLOCK_STATUS) {
    if (!t.structured || t.allocationContext === undefined) return fail(Errno.EINVAL, 'BLOCK_STATUS: no metadata context was negotiated');
    if (req.length === 0) return fail(Errno.EINVAL, 'BLOCK_STATUS: length 0');
  }
  if ((req.type === Cmd.READ || req.type === Cmd.WRITE) && req.length > MAX_PAYLOAD) {
    return fail(Errno.EINVAL, `${name}: length ${req.length} is more than the maximum block size ${MAX_PAYLOAD}`);
  }
  if (req.offset + BigInt(req.length) > BigInt(t.exp.size)) {
    // The protocol asks for ENOSPC on writes past the end, EINVAL otherwise.
    const error = req.type === Cmd.WRITE || req.type === Cmd.WRITE_ZEROES ? Errno.ENOSPC : Errno.EINVAL;
    return fail(error, `${name}: range ${req.offset}+${req.length} is beyond the end of export "${t.exp.name}" (${t.exp.size} bytes)`);
  }
  return undefined;
}

/** Run a validated request. `payload` is the WRITE data (one buffer or several back to back). Never throws. */
export async function execute(req: Request, payload: Bytes | undefined, t: Target): Promise<Outcome> {
  const { pool, exp } = t;
  const offset = Number(req.offset);
  const fua = (req.flags & CmdFlag.FUA) !== 0;
  try {
    switch (req.type) {
      case Cmd.READ:
        return { error: 0, data: req.length === 0 ? Buffer.alloc(0) : await pool.read(exp.id, offset, req.length) };
      case Cmd.WRITE:
        if (req.length > 0) await pool.write(exp.id, offset, payload!);
        if (fua) await pool.flush();
        return OK;
      case Cmd.FLUSH:
        await pool.flush();
        return OK;
      case Cmd.TRIM:
        if (req.length > 0) await pool.discard(exp.id, offset, req.length);
        if (fua) await pool.flush();
        return OK;
      case Cmd.WRITE_ZEROES: {
        const r = req.length > 0 ? await writeZeroes(pool, exp.id, offset, req.length, req.flags) : OK;
        if (r.error === 0 && fua) await pool.flush();
        return r;
      }
      case Cmd.BLOCK_STATUS:
        return { error: 0, extents: blockStatus(pool, exp.id, offset, req.length, (req.flags & CmdFlag.REQ_ONE) !== 0) };
      default:
        return fail(Errno.EINVAL, `${commandName(req.type)} is not supported`);
    }
  } catch (e) {
    return failure(e, commandName(req.type));
  }
}

async function writeZeroes(pool: Pool, id: number, offset: number, length: number, flags: number): Promise<Outcome> {
  const noHole = (flags & CmdFlag.NO_HOLE) !== 0;
  const fast = (flags & CmdFlag.FAST_ZERO) !== 0;
  const canUnmap = !pool.table.features.ignoreDiscard;
  if (!noHole && canUnmap) {
    // Whole chunks are unmapped (metadata only); partial ends cost at most a write of those bytes.
    await pool.discard(id, offset, length);
    return OK;
  }
  const runs = pool.blockStatus(id, offset, length);
  if (fast) {
    if (!noHole && runs.every((r) => !r.mapped)) return OK;
    return fail(Errno.ENOTSUP, noHole ? 'WRITE_ZEROES: NO_HOLE means writing zeros, which is not fast' : 'WRITE_ZEROES: the pool ignores discards, so zeroing means writing');
  }
  // NO_HOLE: every byte is written; otherwise (discards ignored) only mapped runs need zeros.
  for (const r of noHole ? [{ offset, length, mapped: true }] : runs) {
    if (r.mapped) await writeZeroRun(pool, id, r.offset, r.length);
  }
  return OK;
}

async function writeZeroRun(pool: Pool, id: number, offset: number, length: number): Promise<void> {
  const pending: Promise<void>[] = [];
  for (let at = offset; at < offset + length; at += ZERO_PIECE) {
    pending.push(pool.write(id, at, ZEROS.subarray(0, Math.min(ZERO_PIECE, offset + length - at))));
    if (pending.length >= 8) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
}

function blockStatus(pool: Pool, id: number, offset: number, length: number, one: boolean): Extent[] {
  const runs = pool.blockStatus(id, offset, length);
  const limit = one ? 1 : MAX_EXTENTS;
  return runs.slice(0, limit).map((r) => ({ length: r.length, flags: r.mapped ? 0 : State.HOLE | State.ZERO }));
}

function fail(error: number, message: string): Outcome {
  return { error, message };
}

/** Map a pool failure to the NBD error value a client can act on. */
export function failure(e: unknown, what: string): Outcome {
  const message = `${what}: ${(e as Error)?.message ?? String(e)}`;
  if (isThinError(e)) {
    switch (e.code) {
      case 'ENOSPC':
      case 'E_NO_METADATA_SPACE':
        return fail(Errno.ENOSPC, message);
      case 'E_READ_ONLY':
        return fail(Errno.EPERM, message);
      case 'E_CLOSED':
        return fail(Errno.ESHUTDOWN, message);
      case 'E_INVALID':
      case 'E_RANGE':
        return fail(Errno.EINVAL, message);
      default:
        return fail(Errno.EIO, message);
    }
  }
  return fail(Errno.EIO, message);
}

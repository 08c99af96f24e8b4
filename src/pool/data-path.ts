/**
 * The data path: read, write and discard on thin devices, with provisioning and
 * sharing breaks, as dm-thin's map function does them.
 *
 * Contract:
 * - Offsets and lengths are bytes, of any alignment, within the device's size;
 *   anything else is E_INVALID. Failures found before anything is queued (a bad range,
 *   a missing device, a pool that is closed, read-only or failed, an I/O error on the
 *   inline path) throw synchronously; every later one rejects the promise. Pool turns
 *   the throws into rejections (rejectOnThrow), so its callers see promises only.
 * - Health (state.ts): in `ro`, reads and overwrites of mapped, unshared chunks run;
 *   a write that must provision or break sharing, and a discard, fail with E_READ_ONLY.
 *   In `fail` everything fails with E_IO. A failed data write fails its request only
 *   (as a failed bio does in the kernel); the pool's health does not change.
 * - Requests touching one chunk run in the order they were issued (a FIFO lock per
 *   chunk, registered synchronously when the request is made); different chunks
 *   run in parallel. A device's gate is held shared, so a snapshot or delete of
 *   that device waits for its I/O to drain. A request of several chunks settles every
 *   chunk's I/O, also when one fails, before it releases the chunks and the gate and
 *   reports the first failure: no snapshot is ever taken under an in-place write.
 * - A first write to an unmapped chunk allocates, writes the data (zero-filling the
 *   rest unless skip_block_zeroing) and only then maps it, so metadata never points
 *   at unwritten data. A write to a shared chunk (mapped before the device's last
 *   snapshot) copies the chunk to a new block, applies the write and remaps.
 * - Discard unmaps whole chunks and zeroes the partial ones at either end; a data
 *   block whose count reaches 0 is punched out of the data file under passdown, when
 *   the transaction that unmapped it commits (state.ts), as dm-thin's pt2 does.
 * - Inline fast path: a read or write of at most 1 MiB whose chunks, device gate and
 *   (when it provisions) pool gate nobody holds or waits for runs synchronously, in the call,
 *   when the data device can do the I/O without waiting (DataDevice.readNow/writeNow).
 *   Taking the locks and releasing them at once would order it the same way, so the
 *   contract above holds on both paths; a request that cannot finish inline changes
 *   nothing and queues (a multi-chunk write queues only its remaining chunks).
 */
import { ThinError } from '../errors';
import { byteLength, type Bytes, flatten, sliceBytes } from '../io/byte-list';
import type { Release } from './gates';
import { KeyedMutex } from './gates';
import type { PoolState } from './state';
import { discardMode } from './table';

/** One chunk's part of a request: virtual block, offset in the chunk, length, offset in the request. */
interface Piece { vblock: number; off: number; len: number; at: number }
/** Bytes on the data device: offset `dev`, length `len`, at `at` in the request's buffer. */
interface Run { dev: number; at: number; len: number }

/**
 * Largest request done inline: one inline request blocks the event loop for its copies,
 * and above this the thread pool's fixed cost is small beside the I/O anyway.
 */
const INLINE_REQUEST_MAX = 1024 * 1024;
/** Largest chunk whose partial write is done inline when that stages the old bytes or zeros in memory. */
const INLINE_CHUNK_MAX = 1024 * 1024;

export interface BlockStatusRun { offset: number; length: number; mapped: boolean }

/**
 * How a write of part of a chunk reaches a newly allocated block: the whole chunk is
 * written; or the old (shared) chunk is copied with the write laid over it; or the rest
 * of the chunk is zero-filled; or (skip_block_zeroing) only the written bytes go down.
 */
type Provision = 'whole' | 'copy' | 'zero' | 'raw';

export class DataPath {
  private readonly chunks = new KeyedMutex<string>();
  /** A chunk's worth of bytes for inline sharing breaks (used and done with synchronously). */
  private scratch: Buffer | undefined;
  /** A chunk of zeros for inline first writes (never written to). */
  private zeros: Uint8Array | undefined;

  constructor(private readonly s: PoolState) {}

  /** Read `length` bytes at `offset` of thin device `id`; unmapped ranges read as zeros. */
  read(id: number, offset: number, length: number): Promise<Buffer> {
    this.s.assertServing();
    const pieces = this.pieces(id, offset, length);
    const now = this.readInline(id, pieces, length);
    if (now) return Promise.resolve(now);
    const gate = this.s.devGate(id).acquireShared();
    const locks = pieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, async () => {
      const out = Buffer.allocUnsafeSlow(length);
      // Hold every chunk of the request, then read each run of chunks that lie next to
      // each other on the data device with one request. No deadlock: chunk locks are
      // queued in issue order.
      const unlocks = await Promise.all(locks);
      try {
        // Settle every read before the chunks are unlocked, even when one fails.
        await settleAll(this.readRuns(id, pieces, out).map((r) => this.s.data.read(out.subarray(r.at, r.at + r.len), r.dev)));
      } finally {
        for (const unlock of unlocks) unlock();
      }
      return out;
    });
  }

  /** Write `data` (one buffer, or several back to back) at `offset` of thin device `id`. */
  write(id: number, offset: number, data: Bytes): Promise<void> {
    this.s.assertWritable();
    const length = byteLength(data);
    let pieces = this.pieces(id, offset, length);
    if (length <= INLINE_REQUEST_MAX && this.quiet(id, pieces)) {
      // Chunk by chunk, as far as each can be done inline; the rest takes the queue.
      let done = 0;
      while (done < pieces.length && this.writeChunkInline(id, pieces[done], data)) done++;
      if (done === pieces.length) return Promise.resolve();
      pieces = pieces.slice(done);
    }
    const gate = this.s.devGate(id).acquireShared();
    const locks = pieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, () => settleAll(pieces.map(async (p, i) => {
      const unlock = await locks[i];
      try {
        await this.writeChunk(id, p.vblock, p.off, flatten(sliceBytes(data, p.at, p.len)));
      } finally {
        unlock();
      }
    })));
  }

  /**
   * Discard: whole chunks are unmapped (and, with passdown, freed blocks punched out
   * of the data file); the partial chunks at either end are zeroed.
   */
  discard(id: number, offset: number, length: number): Promise<void> {
    this.s.assertCanChangeMetadata();
    const pieces = this.pieces(id, offset, length);
    if (this.s.table.features.ignoreDiscard) return Promise.resolve();
    const cb = this.s.chunkBytes;
    const whole = pieces.filter((p) => p.len === cb);
    const partial = pieces.filter((p) => p.len !== cb);
    // Large ranges take the device exclusively and unmap with one range removal.
    const big = whole.length > 64;
    const gate = big ? this.s.devGate(id).acquireExclusive() : this.s.devGate(id).acquireShared();
    const lockPieces = big ? partial : pieces;
    const locks = lockPieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, async () => {
      await settleAll(lockPieces.map(async (p, i) => {
        const unlock = await locks[i];
        try {
          if (p.len === cb) await this.unmap(id, p.vblock, p.vblock + 1);
          else if (this.s.md.lookup(id, p.vblock)) await this.writeChunk(id, p.vblock, p.off, new Uint8Array(p.len));
        } finally {
          unlock();
        }
      }));
      if (big) await this.unmap(id, whole[0].vblock, whole[whole.length - 1].vblock + 1);
    });
  }

  /**
   * Which bytes of [offset, offset+length) of thin device `id` are provisioned:
   * runs of whole chunks (clipped to the range), in order, covering the range
   * exactly. Unprovisioned runs read as zeros. What NBD's base:allocation reports.
   */
  blockStatus(id: number, offset: number, length: number): BlockStatusRun[] {
    this.checkRange(id, offset, length);
    const out: BlockStatusRun[] = [];
    const end = offset + length;
    const cb = this.s.chunkBytes;
    const push = (from: number, to: number, mapped: boolean) => {
      if (to <= from) return;
      const last = out[out.length - 1];
      if (last && last.mapped === mapped) last.length += to - from;
      else out.push({ offset: from, length: to - from, mapped });
    };
    // Walk only the mappings in range: cost follows what is mapped, not the range's size.
    let pos = offset;
    for (const [vblock] of this.s.md.mappings(id, Math.floor(offset / cb), Math.ceil(end / cb))) {
      const from = Math.max(vblock * cb, offset);
      push(pos, from, false);
      pos = Math.min((vblock + 1) * cb, end);
      push(from, pos, true);
    }
    push(pos, end, false);
    return out;
  }

  // ------------------------------------------------------------------ internals

  // ------------------------------------------------------------------ inline fast path
  //
  // A request whose chunks nobody holds or waits for, on a device and pool no message or
  // commit is waiting to quiesce, may run to the end synchronously: taking the locks and
  // releasing them at once would order it exactly as the queue does. It runs inline
  // only if the data device can do its I/O without waiting (DataDevice.readNow/writeNow);
  // otherwise it changes nothing and takes the queued path.

  /** Nothing holds or waits for the device's gate or any of the pieces' chunks. */
  private quiet(id: number, pieces: Piece[]): boolean {
    if (!this.s.devGate(id).freeForShared) return false;
    for (const p of pieces) if (!this.chunks.isFree(key(id, p.vblock))) return false;
    return true;
  }

  /** The whole read, done now; undefined if it must wait (for a lock or for the disk). */
  private readInline(id: number, pieces: Piece[], length: number): Buffer | undefined {
    if (length > INLINE_REQUEST_MAX || !this.s.data.canReadNow || !this.quiet(id, pieces)) return undefined;
    // Not zero-filled: every byte is either read or zeroed (unmapped) below, and the
    // buffer is dropped if a read cannot be done now. allocUnsafeSlow: the buffer owns
    // its memory (no pool slice kept alive by a client).
    const out = Buffer.allocUnsafeSlow(length);
    for (const r of this.readRuns(id, pieces, out)) {
      if (!this.s.data.readNow(out.subarray(r.at, r.at + r.len), r.dev)) return undefined;
    }
    return out;
  }

  /**
   * One chunk's write, done now, as writeChunk would do it; false (nothing changed) if it
   * must wait: for the pool gate, for the disk, or for space (the queued path applies
   * the no-space policy).
   */
  private writeChunkInline(id: number, p: Piece, data: Bytes): boolean {
    const { md, data: dev, chunkBytes: cb } = this.s;
    const buf = sliceBytes(data, p.at, p.len);
    const m = md.lookup(id, p.vblock);
    if (m && !md.isShared(id, m)) return dev.writeNow(buf, m.block * cb + p.off);
    // Provisioning: the queued path waits for the pool gate, and reports ro/fail.
    if (!this.s.poolGate.freeForShared || !this.s.canChangeMetadata) return false;
    const how = this.provision(m !== undefined, p.off, p.len);
    let bufs: Uint8Array[];
    let at = 0;
    switch (how) {
      case 'whole':
        bufs = buf;
        break;
      case 'copy': {
        // The old chunk's bytes around the write, if the page cache has them.
        if (cb > INLINE_CHUNK_MAX) return false;
        const old = this.scratch ??= Buffer.allocUnsafeSlow(cb);
        if (!dev.readNow(old, m!.block * cb)) return false;
        bufs = [old.subarray(0, p.off), ...buf, old.subarray(p.off + p.len)];
        break;
      }
      case 'zero': {
        if (cb > INLINE_CHUNK_MAX) return false;
        const zeros = this.zeros ??= new Uint8Array(cb);
        bufs = [zeros.subarray(0, p.off), ...buf, zeros.subarray(p.off + p.len)];
        break;
      }
      case 'raw':
        bufs = buf;
        at = p.off;
        break;
    }
    // Decided before allocating: a block allocated and given back would leave a hole that
    // a later commit makes reusable, and allocation would then depend on timing.
    if (!dev.canWriteNow()) return false;
    const b = this.s.metadataOp('allocate a data block', () => md.allocateDataBlock());
    if (b < 0) return false;
    try {
      if (!dev.writeNow(bufs, b * cb + at)) throw new ThinError('E_INVARIANT', 'an inline write was refused after canWriteNow() said yes');
    } catch (e) {
      this.releaseUnwritten(b);
      throw e;
    }
    this.s.metadataOp('insert a mapping', () => md.insertMapping(id, p.vblock, b));
    // After mapping: its listeners run now, and nothing holds this chunk for them.
    this.s.checkLowWater();
    return true;
  }

  /** How a write of `len` bytes at `off` in a chunk goes to a new block (one rule for both paths). */
  private provision(mapped: boolean, off: number, len: number): Provision {
    if (off === 0 && len === this.s.chunkBytes) return 'whole';
    if (mapped) return 'copy';
    return this.s.table.features.skipBlockZeroing ? 'raw' : 'zero';
  }

  /** Give back a block allocated for a write that failed (unless a rollback already dropped it). */
  private releaseUnwritten(b: number): void {
    if (this.s.canChangeMetadata) this.s.metadataOp('release an unwritten data block', () => this.s.md.releaseDataBlock(b));
  }

  /**
   * Zero-fill the unmapped pieces of a read in `out` and return the mapped ones as runs:
   * chunks that lie next to each other on the data device merge into one run (sequential
   * provisioning makes that the common case: a 1 MiB read is one pread, not 16). Call
   * with the chunks held (or quiet): a multi-chunk request walks the mapping tree once.
   */
  private readRuns(id: number, pieces: Piece[], out: Buffer): Run[] {
    const cb = this.s.chunkBytes;
    const blocks = this.mappedBlocks(id, pieces);
    const runs: Run[] = [];
    let run: Run | undefined;
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      if (blocks[i] < 0) {
        out.fill(0, p.at, p.at + p.len);
        run = undefined;
        continue;
      }
      const dev = blocks[i] * cb + p.off;
      if (run && dev === run.dev + run.len) {
        run.len += p.len;
      } else {
        run = { dev, at: p.at, len: p.len };
        runs.push(run);
      }
    }
    return runs;
  }

  // ------------------------------------------------------------------ queued path

  private async writeChunk(id: number, vblock: number, off: number, buf: Uint8Array): Promise<void> {
    const { md, data, chunkBytes: cb } = this.s;
    const m = md.lookup(id, vblock);
    if (m && !md.isShared(id, m)) {
      await data.write(buf, m.block * cb + off);
      return;
    }
    const hold = { release: await this.s.poolGate.acquireShared() };
    try {
      this.s.assertCanChangeMetadata();
      const b = await this.allocate(hold);
      try {
        const dst = b * cb;
        switch (this.provision(m !== undefined, off, buf.length)) {
          case 'whole': await data.write(buf, dst); break;
          case 'copy': await data.patchCopy(m!.block * cb, dst, cb, buf, off); break;
          case 'zero': {
            const chunk = new Uint8Array(cb);
            chunk.set(buf, off);
            await data.write(chunk, dst);
            break;
          }
          case 'raw': await data.write(buf, dst + off); break;
        }
      } catch (e) {
        this.releaseUnwritten(b);
        throw e;
      }
      this.s.metadataOp('insert a mapping', () => md.insertMapping(id, vblock, b));
    } finally {
      hold.release();
    }
  }

  /** Unmap [from, to) of `id`; with passdown, the blocks that became free are punched once this commits. */
  private async unmap(id: number, from: number, to: number): Promise<void> {
    const release = await this.s.poolGate.acquireShared();
    try {
      const { freed } = this.s.metadataOp('discard', () => this.s.md.unmap(id, from, to));
      if (discardMode(this.s.table.features) === 'passdown') this.s.punchAfterCommit(freed);
    } finally {
      release();
    }
  }

  /** Allocate a data block, waiting for space (or failing) as the no-space policy says. */
  private async allocate(hold: { release: Release }): Promise<number> {
    for (let committed = false; ;) {
      const b = this.s.metadataOp('allocate a data block', () => this.s.md.allocateDataBlock());
      if (b >= 0) {
        this.s.checkLowWater();
        return b;
      }
      if (!committed && this.s.md.spaceUsage().dataFree > 0) {
        // Blocks freed in this transaction become usable after a commit (kernel: commit and retry).
        hold.release();
        await this.s.commit();
        hold.release = await this.s.poolGate.acquireShared();
        committed = true;
        continue;
      }
      this.s.setHealth('out_of_data_space');
      if (this.s.table.features.errorIfNoSpace || this.s.noSpaceTimeoutMs <= 0) throw this.s.noSpace();
      hold.release();
      try {
        await this.s.waitForSpace();
      } finally {
        hold.release = await this.s.poolGate.acquireShared();
      }
      committed = false;
    }
  }

  /**
   * The data block of each piece's chunk, or -1 where unmapped. Pieces are consecutive
   * chunks, so a multi-chunk request walks the mapping tree once instead of descending
   * it per chunk (call with the chunks locked; nothing mutates the tree meanwhile).
   */
  private mappedBlocks(id: number, pieces: Piece[]): number[] {
    const md = this.s.md;
    // Always a packed array of small integers (an array literal, or pushes): map() and
    // new Array(n) give holey arrays once V8 optimises the caller, and readRuns, optimised
    // on packed ones in the warm-up, then deoptimised on them ("wrong map").
    if (pieces.length === 1) return [md.lookup(id, pieces[0].vblock)?.block ?? -1];
    const out: number[] = [];
    if (pieces.length === 0) return out;
    const first = pieces[0].vblock;
    for (let i = 0; i < pieces.length; i++) out.push(-1);
    for (const [vblock, m] of md.mappings(id, first, first + pieces.length)) out[vblock - first] = m.block;
    return out;
  }

  /** Run `body` with the device's gate held; its chunk pieces settle before it resolves. */
  private async run<T>(gate: Promise<Release>, body: () => Promise<T>): Promise<T> {
    const release = await gate;
    try {
      return await body();
    } finally {
      release();
    }
  }

  /** E_NO_DEVICE for a missing device; E_INVALID for a range that is not within it. */
  private checkRange(id: number, offset: number, length: number): void {
    const size = this.s.deviceSize(id);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new ThinError('E_INVALID', `offset ${offset} and length ${length} must be whole numbers of bytes >= 0`);
    }
    if (offset + length > size) {
      throw new ThinError('E_INVALID', `range ${offset}+${length} is beyond the end of thin device ${id} (${size} bytes)`, { device: id });
    }
  }

  /** Split a byte range of `id` into per-chunk pieces; E_INVALID past the device's end. */
  private pieces(id: number, offset: number, length: number): Piece[] {
    this.checkRange(id, offset, length);
    const cb = this.s.chunkBytes;
    const out: Piece[] = [];
    for (let pos = offset; pos < offset + length;) {
      const vblock = Math.floor(pos / cb);
      const off = pos - vblock * cb;
      const len = Math.min(cb - off, offset + length - pos);
      out.push({ vblock, off, len, at: pos - offset });
      pos += len;
    }
    return out;
  }
}

function key(id: number, vblock: number): string {
  return `${id}:${vblock}`;
}

/** Wait for every I/O to settle (none may still be writing into a block we release), then throw the first failure. */
async function settleAll(ios: Array<Promise<void> | undefined>): Promise<void> {
  const failed = (await Promise.allSettled(ios)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Block manager: 4 KiB metadata blocks over a BlockDevice, with a bounded cache and
 * one validator per block type.
 *
 * Contract:
 * - `read(b, v)` returns the block's bytes after `v.check` passed; the same bytes are
 *   never validated twice while cached. The returned array is shared with the cache:
 *   callers must not modify it (writers go through the transaction manager, which
 *   copies). A block that fails validation throws a ThinError naming the block
 *   number, its kind and what was wrong; it never enters the cache.
 * - `write(b, data, v)` stamps the block (`v.prepare`: blocknr and checksum) and
 *   writes it through to the device at once; it replaces any cached copy.
 * - `sync()` makes every earlier write durable.
 * - Asynchronous writes go in three steps: `stage` stamps a run of blocks and makes
 *   them what `read` returns from then on (they stay readable even if the cache
 *   evicts them, until `unstage`); `writeStaged` writes them with writevAsync;
 *   `unstage` ends that. The caller keeps staged bytes unchanged until then.
 * - Cost: a cached read is O(1) (one Map lookup); the cache holds at most `cacheBlocks`
 *   blocks and evicts approximately the least recently used (a hit moves a block to
 *   the young end only once it has aged past half the cache).
 */
import { ThinError } from '../errors';
import { hot } from '../hot';
import type { BlockDevice } from '../io/block-device';
import { METADATA_BLOCK_SIZE } from '../units';
import { getU32, getU64Unchecked, setU32, setU64 } from './layout';

export const BLOCK_SIZE = METADATA_BLOCK_SIZE;

export interface Validator {
  /** Kind of block, for messages: "superblock", "btree node", ... */
  readonly name: string;
  /** Throw a ThinError (E_CHECKSUM / E_CORRUPT) if `data` is not a valid block at `b`. */
  check(data: Uint8Array, b: number): void;
  /** Stamp `data` for writing at `b` (blocknr, checksum). */
  prepare(data: Uint8Array, b: number): void;
}

/** Offsets every dm-thin metadata block shares: its checksum and its own location. */
export const BLOCK_CSUM = 0;
export const BLOCK_BLOCKNR = 8;

export function blockChecksum(data: Uint8Array, salt: number): number {
  return hot.blockChecksum(data, salt);
}

/**
 * The validator shape shared by every dm-thin block type: a salted crc32c over
 * bytes 4..4095 stored at offset 0, and the block's own location at offset 8.
 * `extra` adds type-specific checks (magic, node header) after those pass.
 */
export function saltedValidator(name: string, salt: number, extra?: (data: Uint8Array, b: number) => void, checkBlocknr = true): Validator {
  return {
    name,
    check(data, b) {
      const stored = getU32(data, BLOCK_CSUM);
      const want = blockChecksum(data, salt);
      if (stored !== want) {
        throw new ThinError('E_CHECKSUM', `bad checksum in ${name} (block ${b}): stored ${stored}, computed ${want}`, { block: b, kind: name });
      }
      if (checkBlocknr) {
        // Unchecked: a blocknr beyond 2^53 cannot equal b, and is reported exactly below.
        if (getU64Unchecked(data, BLOCK_BLOCKNR) !== b) {
          const nr = (BigInt(getU32(data, BLOCK_BLOCKNR + 4)) << 32n) | BigInt(getU32(data, BLOCK_BLOCKNR));
          throw new ThinError('E_CORRUPT', `bad block nr in ${name} (block ${b}): it says it is block ${nr}`, { block: b, kind: name });
        }
      }
      if (extra) extra(data, b);
    },
    prepare(data, b) {
      setU64(data, BLOCK_BLOCKNR, b, 'blocknr');
      setU32(data, BLOCK_CSUM, blockChecksum(data, salt));
    },
  };
}

export interface BlockManagerOptions {
  cacheBlocks?: number;
}

interface CacheEntry {
  data: Uint8Array;
  /** `tick` when the entry last moved to the young end of the Map's order. */
  stamp: number;
}

export class BlockManager {
  readonly device: BlockDevice;
  /** Map order is age order: the first key is the eviction candidate. */
  private readonly cache = new Map<number, CacheEntry>();
  private readonly cacheBlocks: number;
  /** Blocks staged for an asynchronous write: what reads return until unstaged. */
  private readonly staged = new Map<number, Uint8Array>();
  private tick = 0;
  reads = 0;
  writes = 0;

  constructor(device: BlockDevice, opts: BlockManagerOptions = {}) {
    this.device = device;
    this.cacheBlocks = Math.max(16, opts.cacheBlocks ?? 16384);
  }

  get nrBlocks(): number {
    return Math.floor(this.device.size() / BLOCK_SIZE);
  }

  get readOnly(): boolean {
    return this.device.readOnly;
  }

  read(b: number, v: Validator): Uint8Array {
    const hit = this.cache.get(b);
    if (hit !== undefined) {
      // Refresh recency (re-insert at the young end) only for entries in the older
      // half: a Map delete+set costs ~10x a get, and btree roots and spines are hit
      // on every lookup.
      if (this.tick - hit.stamp > this.cacheBlocks >> 1) {
        this.cache.delete(b);
        hit.stamp = ++this.tick;
        this.cache.set(b, hit);
      }
      return hit.data;
    }
    if (this.staged.size !== 0) {
      const s = this.staged.get(b);
      if (s !== undefined) {
        this.remember(b, s);
        return s;
      }
    }
    const data = this.readRaw(b);
    v.check(data, b);
    this.remember(b, data);
    return data;
  }

  /** Read without validating or caching (checkers and repair use this). */
  readRaw(b: number): Uint8Array {
    if (!Number.isSafeInteger(b) || b < 0 || b >= this.nrBlocks) {
      throw new ThinError('E_CORRUPT', `block ${b} is outside the metadata device (${this.nrBlocks} blocks)`, { block: b });
    }
    const data = new Uint8Array(BLOCK_SIZE);
    this.device.read(data, b * BLOCK_SIZE);
    this.reads++;
    return data;
  }

  write(b: number, data: Uint8Array, v: Validator): void {
    if (data.length !== BLOCK_SIZE) throw new ThinError('E_INVARIANT', `block ${b}: writes are whole ${BLOCK_SIZE}-byte blocks, not ${data.length} bytes`, { block: b });
    if (b < 0 || b >= this.nrBlocks) {
      throw new ThinError('E_INVARIANT', `write to block ${b} outside the metadata device (${this.nrBlocks} blocks)`, { block: b });
    }
    v.prepare(data, b);
    this.device.write(data, b * BLOCK_SIZE);
    this.writes++;
    this.cache.delete(b);
    this.remember(b, data);
  }

  /**
   * Write consecutive blocks `start, start+1, ...` with one device write (commit
   * writes runs of freshly allocated blocks; one syscall per run, not per block).
   * Each block is stamped by its own validator first. `cache: false` (bulk loads
   * writing blocks they will hardly read again) drops them from the cache instead.
   */
  writeRun(start: number, blocks: Array<{ data: Uint8Array; v: Validator }>, cache = true): void {
    if (blocks.length === 1 && cache) { this.write(start, blocks[0].data, blocks[0].v); return; }
    const end = start + blocks.length;
    if (start < 0 || end > this.nrBlocks) {
      throw new ThinError('E_INVARIANT', `write to blocks ${start}..${end - 1} outside the metadata device (${this.nrBlocks} blocks)`, { block: start });
    }
    const bufs = blocks.map(({ data, v }, i) => {
      v.prepare(data, start + i);
      return data;
    });
    this.device.writev(bufs, start * BLOCK_SIZE);
    this.writes += blocks.length;
    blocks.forEach(({ data }, i) => {
      this.cache.delete(start + i);
      if (cache) this.remember(start + i, data);
    });
  }

  /**
   * Stamp blocks `start, start+1, ...` for writing (each by its own validator) and
   * make them what reads return; returns the buffers for `writeStaged`.
   */
  stage(start: number, blocks: ReadonlyArray<{ data: Uint8Array; v: Validator }>): Uint8Array[] {
    const end = start + blocks.length;
    if (start < 0 || end > this.nrBlocks) {
      throw new ThinError('E_INVARIANT', `write to blocks ${start}..${end - 1} outside the metadata device (${this.nrBlocks} blocks)`, { block: start });
    }
    return blocks.map(({ data, v }, i) => {
      if (data.length !== BLOCK_SIZE) throw new ThinError('E_INVARIANT', `block ${start + i}: writes are whole ${BLOCK_SIZE}-byte blocks, not ${data.length} bytes`, { block: start + i });
      v.prepare(data, start + i);
      this.staged.set(start + i, data);
      this.cache.delete(start + i);
      this.remember(start + i, data);
      return data;
    });
  }

  /** Write staged blocks `start, start+1, ...` without blocking the event loop. */
  async writeStaged(start: number, bufs: readonly Uint8Array[]): Promise<void> {
    await this.device.writevAsync(bufs, start * BLOCK_SIZE);
    this.writes += bufs.length;
  }

  /**
   * Staged blocks `start..start+count-1` are written (or given up): reads go back to
   * the cache and the device. `forget` drops them from the cache too (a failed write:
   * the device does not hold them).
   */
  unstage(start: number, count: number, forget = false): void {
    for (let b = start; b < start + count; b++) {
      this.staged.delete(b);
      if (forget) this.cache.delete(b);
    }
  }

  syncAsync(): Promise<void> {
    return this.device.syncAsync();
  }

  /** Forget a cached copy (the block was freed or is about to be rewritten elsewhere). */
  forget(b: number): void {
    this.cache.delete(b);
  }

  dropCache(): void {
    this.cache.clear();
  }

  sync(): void {
    this.device.sync();
  }

  private remember(b: number, data: Uint8Array): void {
    this.cache.set(b, { data, stamp: ++this.tick });
    if (this.cache.size > this.cacheBlocks) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
  }
}

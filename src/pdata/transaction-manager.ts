/**
 * Transaction manager: the only way to get a writable metadata block.
 *
 * Contract (the kernel's dm-transaction-manager, in userspace):
 * - `newBlock` allocates a zeroed block with count 1 from the metadata space map.
 * - `shadow(b)` returns a writable copy-on-write version of `b`. A block created or
 *   shadowed in this transaction whose count is 1 is returned as is (no copy);
 *   otherwise a new block is allocated, `b`'s count is decremented and the bytes
 *   are copied. `incChildren` is true when `b` was shared (count > 1): the caller
 *   must then increment everything the copy points to, because the copy is a new
 *   referrer of those children.
 * - A block committed in an earlier transaction is never written in place, and the
 *   space map never hands out a block that is referenced by the committed state, so
 *   the last commit stays intact on disk until the next superblock write.
 * - `commit(superblock)` writes every dirty block, syncs, writes block 0 last and
 *   syncs again. The superblock write is the commit point.
 * - `commitAsync` does the same without blocking the event loop. Everything in
 *   memory happens before it returns: the dirty blocks and the superblock are
 *   stamped, become what reads return, and the dirty set is empty; the promise
 *   settles once the blocks, then the superblock, are durable. Until it settles no
 *   block may change (no new, shadow, inc, dec or commit: the caller serialises);
 *   reads are fine. If a write fails, the superblock has not been written (the last
 *   commit stays the one on disk, as after a crash) and the blocks are dirty again.
 * - Dirty blocks live in memory until commit or `spill()`; reads see them. `spill`
 *   (bulk loads) writes them early, unsynced, to their places: blocks free in the
 *   committed state, so the last commit stays intact; they then read back from the
 *   device, and changing one later shadows it like any block written before.
 * - The metadata space map is injected once (constructor or `bindSpaceMap`); the
 *   metadata space map binds itself when it is formatted or opened for writing,
 *   because it allocates its own blocks through this transaction manager. Without
 *   one, the transaction manager only reads: anything that would change a count
 *   throws E_READ_ONLY.
 */
import { ThinError } from '../errors';
import { BlockManager, BLOCK_SIZE, Validator } from './block-manager';

/** New blocks are cut from slabs of this many blocks (64 KiB). */
const SLAB_BLOCKS = 16;
/** Blocks per write at commit (1 MiB). */
const MAX_RUN = 256;

/** What the transaction manager needs from the metadata space map. */
export interface MetadataAllocator {
  count(b: number): number;
  inc(b: number): void;
  /** Decrement; returns the new count. */
  dec(b: number): number;
  /**
   * Allocate a block free in both the current and the last committed state, with
   * count 1. Throws E_NO_METADATA_SPACE when there is none.
   */
  allocate(): number;
}

export interface WritableBlock {
  readonly location: number;
  readonly data: Uint8Array;
}

export interface ShadowResult {
  block: WritableBlock;
  /** The original was shared: the caller must inc every child/value of the copy. */
  incChildren: boolean;
}

interface Dirty {
  data: Uint8Array;
  v: Validator;
}

/** The allocator of a transaction manager that only reads. */
const READ_ONLY: MetadataAllocator = {
  count: readOnly,
  inc: readOnly,
  dec: readOnly,
  allocate: readOnly,
};

function readOnly(): never {
  throw new ThinError('E_READ_ONLY', 'metadata is read-only: no metadata space map is bound to the transaction manager');
}

export class TransactionManager {
  readonly bm: BlockManager;
  private sm: MetadataAllocator = READ_ONLY;
  private dirty = new Map<number, Dirty>();
  /**
   * Bumped by every call that may change a block's place or count (new, shadow,
   * inc, dec, flush, abort). A cached position in a tree (the btree's append hint)
   * is only trusted while the epoch is unchanged.
   */
  epoch = 0;
  private slab = new Uint8Array(0);
  /** Buffers of spilled blocks, reused (zeroed) for new blocks. */
  private readonly spare: Uint8Array[] = [];
  private slabUsed = SLAB_BLOCKS;

  constructor(bm: BlockManager, sm?: MetadataAllocator) {
    this.bm = bm;
    if (sm !== undefined) this.bindSpaceMap(sm);
  }

  /** Install the metadata space map; once per transaction manager. */
  bindSpaceMap(sm: MetadataAllocator): void {
    if (this.sm !== READ_ONLY) throw new ThinError('E_INVARIANT', 'the transaction manager already has a metadata space map');
    this.sm = sm;
  }

  get readOnly(): boolean {
    return this.bm.readOnly;
  }

  /** Read-only view of a block (possibly one dirtied in this transaction). Do not modify it. */
  read(b: number, v: Validator): Uint8Array {
    if (this.dirty.size > 0) {
      const d = this.dirty.get(b);
      if (d !== undefined) return d.data;
    }
    return this.bm.read(b, v);
  }

  /** True if `b` was allocated or shadowed in this transaction. */
  isFresh(b: number): boolean {
    return this.dirty.has(b);
  }

  newBlock(v: Validator): WritableBlock {
    this.assertWritable();
    this.epoch++;
    const b = this.sm.allocate();
    const data = this.zeroedBlock();
    this.dirty.set(b, { data, v });
    return { location: b, data };
  }

  shadow(b: number, v: Validator): ShadowResult {
    this.assertWritable();
    this.epoch++;
    const count = this.sm.count(b);
    if (count === 0) {
      throw new ThinError('E_CORRUPT', `shadowing block ${b}, which the metadata space map says is free`, { block: b, kind: v.name });
    }
    const d = this.dirty.get(b);
    if (d !== undefined && count === 1) return { block: { location: b, data: d.data }, incChildren: false };
    const src = this.read(b, v);
    const nb = this.newBlock(v);
    nb.data.set(src);
    this.dec(b);
    return { block: nb, incChildren: count > 1 };
  }

  inc(b: number): void {
    this.epoch++;
    this.sm.inc(b);
  }

  /** Decrement `b`'s count; returns the new count. A fresh block dropping to 0 is discarded. */
  dec(b: number): number {
    this.epoch++;
    const n = this.sm.dec(b);
    if (n === 0) this.dirty.delete(b);
    return n;
  }

  refCount(b: number): number {
    return this.sm.count(b);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Write every dirty block (ascending; runs of consecutive blocks in one write each) and sync. */
  flushDirty(): void {
    for (const r of this.runs()) this.bm.writeRun(r.start, r.blocks);
    this.bm.sync();
    this.dirty.clear();
    this.epoch++;
  }

  /**
   * Bulk loads: hold at most this many dirty blocks where `spillIfAbove` is called
   * (between whole changes of the data space map's commit, whose block writes are
   * complete then); undefined (the default) never spills.
   */
  spillAbove: number | undefined;

  /** `spill()` if a bulk load set `spillAbove` and more blocks than that are held. */
  spillIfAbove(): void {
    if (this.spillAbove !== undefined && this.dirty.size >= this.spillAbove) this.spill();
  }

  /**
   * Write the dirty blocks now (no sync; the commit syncs) and stop holding them:
   * a bulk load's memory stays bounded. See the contract.
   */
  spill(): void {
    this.assertWritable();
    // Not cached: a cached block keeps its whole slab alive, and few are read again.
    // Nothing holds their buffers at a safe point: they serve the next new blocks.
    for (const r of this.runs()) this.bm.writeRun(r.start, r.blocks, false);
    for (const d of this.dirty.values()) this.spare.push(d.data);
    this.dirty.clear();
    this.epoch++;
  }

  /** The dirty blocks in ascending runs of consecutive blocks, at most MAX_RUN each. */
  private runs(): Array<{ start: number; blocks: Dirty[] }> {
    const blocks = [...this.dirty.keys()].sort((a, b) => a - b);
    const out: Array<{ start: number; blocks: Dirty[] }> = [];
    for (let i = 0; i < blocks.length;) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1 && j - i < MAX_RUN) j++;
      out.push({ start: blocks[i], blocks: blocks.slice(i, j).map((b) => this.dirty.get(b)!) });
      i = j;
    }
    return out;
  }

  /**
   * Commit: dirty blocks first, then the superblock at block 0, each followed by a
   * sync. The caller has already folded the space maps into dirty blocks.
   */
  commit(superblock: Uint8Array, sbValidator: Validator): void {
    this.assertWritable();
    if (this.dirty.has(0)) throw new ThinError('E_INVARIANT', 'block 0 (the superblock) was allocated as an ordinary metadata block');
    this.flushDirty();
    this.bm.write(0, superblock, sbValidator);
    this.bm.sync();
  }

  /** `commit` without blocking the event loop (see the contract). */
  commitAsync(superblock: Uint8Array, sbValidator: Validator): Promise<void> {
    this.assertWritable();
    if (this.dirty.has(0)) throw new ThinError('E_INVARIANT', 'block 0 (the superblock) was allocated as an ordinary metadata block');
    const dirty = this.dirty;
    const runs = this.runs();
    const staged = runs.map((r) => ({ start: r.start, bufs: this.bm.stage(r.start, r.blocks) }));
    const sb = this.bm.stage(0, [{ data: superblock, v: sbValidator }]);
    this.dirty = new Map();
    this.epoch++;
    return this.writeCommit(staged, sb, dirty);
  }

  private async writeCommit(staged: Array<{ start: number; bufs: Uint8Array[] }>, sb: Uint8Array[], dirty: Map<number, Dirty>): Promise<void> {
    try {
      for (const s of staged) await this.bm.writeStaged(s.start, s.bufs);
      await this.bm.syncAsync();
      await this.bm.writeStaged(0, sb);
      await this.bm.syncAsync();
    } catch (e) {
      // Nothing is committed: the blocks belong to the open transaction again, and
      // the superblock in the cache is not the one on disk.
      for (const s of staged) this.bm.unstage(s.start, s.bufs.length, true);
      this.bm.unstage(0, 1, true);
      for (const [b, d] of dirty) if (!this.dirty.has(b)) this.dirty.set(b, d);
      this.epoch++;
      throw e;
    }
    for (const s of staged) this.bm.unstage(s.start, s.bufs.length);
    this.bm.unstage(0, 1);
  }

  /** Throw away everything dirtied in this transaction (the caller reloads its space maps). */
  abort(): void {
    this.epoch++;
    this.dirty.clear();
  }

  /**
   * A zeroed 4 KiB buffer for a new block, cut from a slab of SLAB_BLOCKS: one
   * allocation per slab instead of one per block (a fresh ArrayBuffer per block was
   * ~8 % of a bulk insert). A slab stays alive while any of its blocks is cached, so
   * the bound on memory is SLAB_BLOCKS times the cache in the worst case; blocks made
   * together are mostly cached and evicted together.
   */
  private zeroedBlock(): Uint8Array {
    const spare = this.spare.pop();
    if (spare !== undefined) return spare.fill(0);
    if (this.slabUsed === SLAB_BLOCKS) {
      this.slab = new Uint8Array(SLAB_BLOCKS * BLOCK_SIZE);
      this.slabUsed = 0;
    }
    const at = this.slabUsed++ * BLOCK_SIZE;
    return this.slab.subarray(at, at + BLOCK_SIZE);
  }

  private assertWritable(): void {
    if (this.bm.readOnly) throw new ThinError('E_READ_ONLY', `metadata device ${this.bm.device.name} is open read-only`);
  }
}

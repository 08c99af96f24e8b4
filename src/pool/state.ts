/**
 * What every part of an open pool shares: the table, the metadata, the data device,
 * the pool-wide gate, the pool's health and the space policy.
 *
 * Contract:
 * - One PoolState per open pool; the data path (data-path.ts), the messages
 *   (messages.ts) and the status reports (status.ts) all work through it, and
 *   Pool (pool.ts) owns its lifecycle.
 * - Health follows dm-thin's pool modes (docs/reliability.md has each transition next
 *   to the kernel's rule): `rw`; `out_of_data_space` (provisioning waits or fails,
 *   everything else works); `ro` (a metadata operation failed, or needs_check was set
 *   when the pool opened: no provisioning, no metadata change, no commit; reads and
 *   overwrites of mapped, unshared chunks still work); `fail` (even the rollback
 *   failed: every request fails with E_IO). `ro` and `fail` are never left while the
 *   pool is open.
 * - Every metadata mutation runs through `metadataOp`, and every sync and commit
 *   through `syncData` / `commitMetadata`. A failure of any of them (an I/O error,
 *   damage, no metadata space; not a caller's misuse, which changes nothing) is the
 *   kernel's metadata_operation_failed: the open transaction is aborted, needs_check
 *   is set in the superblock on disk, and the pool turns `ro`; if the abort or the
 *   flag cannot be written, `fail`. The error is rethrown to the caller.
 * - After a failed sync of either device, no later flush or commit reports success
 *   while the pool stays open: Linux may have dropped the dirty pages the sync failed
 *   to write and marked them clean, so a later sync that succeeds proves nothing.
 *   `commit()` in `ro` or `fail` fails with E_IO (the kernel errors flushes then too).
 * - `commit()` takes the pool gate exclusively (in-flight provisioning finishes
 *   first, so a commit never captures an allocated but unmapped block), syncs the
 *   data device, then commits the metadata without blocking the event loop. The
 *   periodic commit syncs the data device without the gate first, until little is
 *   left, so writes that provision wait only for the rest and the metadata commit.
 * - Discard passdown (dm-thin's discard pt1/pt2): the data blocks an unmap frees are
 *   punched out of the data device only after the metadata that unmaps them is
 *   committed, inside that commit, under the exclusive pool gate. Punched earlier, a
 *   crash before the commit would leave committed mappings (a snapshot's, or another
 *   device's that a sharing break released in the same transaction) pointing at
 *   zeros; punched after the gate opens, a new allocation could already hold the
 *   block. A failed punch changes nothing that matters (the kernel ignores a failed
 *   passdown too) and is reported as a 'passdown-error' event, never silently.
 * - Out of data space: `waitForSpace()` queues a writer until a commit frees blocks
 *   or a resize adds some (`onSpaceAvailable()`), or fails it after
 *   no_space_timeout; with error_if_no_space it fails at once.
 */
import type { EventEmitter } from 'events';
import { isThinError, ThinError, type ThinErrorCode } from '../errors';
import type { DataDevice } from '../io/data-device';
import type { ThinMetadata } from '../thin/metadata';
import { SECTOR_SIZE } from '../units';
import { Gate } from './gates';
import { PoolTable, saveTable } from './table';

export type PoolHealth = 'rw' | 'out_of_data_space' | 'ro' | 'fail';

/** Errors a metadata operation throws before it changes anything (a caller's misuse, not a failure). */
const MISUSE = new Set<ThinErrorCode>([
  'E_INVALID', 'E_RANGE', 'E_NO_DEVICE', 'E_DEVICE_EXISTS', 'E_TRANSACTION_MISMATCH', 'E_METADATA_SNAP_EXISTS',
  'E_NO_METADATA_SNAP', 'E_READ_ONLY', 'E_CLOSED', 'E_UNSUPPORTED',
]);

/** Most syncs the periodic commit makes without the pool gate before the one under it. */
const PRESYNC_PASSES = 4;
/** A sync without the gate shorter than this left little to write: the gated one follows. */
const PRESYNC_SHORT_MS = 20;

/** The 'passdown-error' event: punching freed blocks out of the data device failed. */
export interface PassdownError { firstBlock: number; blocks: number; error: unknown; message: string }

interface SpaceWaiter { wake: () => void; fail: (e: Error) => void; timer: NodeJS.Timeout }

export class PoolState {
  readonly chunkBytes: number;
  readonly readOnly: boolean;
  /** Held shared by provisioning and unmapping; exclusively by commits and messages. */
  readonly poolGate = new Gate();
  private readonly devGates = new Map<number, Gate>();
  private health: PoolHealth = 'rw';
  /** Why the pool is `ro` or `fail` (the failure, or needs_check found at open). */
  private why: string | undefined;
  private lowWaterSignalled = false;
  private spaceWaiters: SpaceWaiter[] = [];
  /** Data blocks freed by unmaps in the open transaction, punched once it commits (passdown). */
  private punches: number[] = [];
  closed = false;

  constructor(
    readonly dir: string,
    readonly table: PoolTable,
    readonly md: ThinMetadata,
    readonly data: DataDevice,
    private readonly events: EventEmitter,
    readonly noSpaceTimeoutMs: number,
    readOnly: boolean,
    /** The metadata device's path, for messages that say what to check. */
    readonly metadataFile: string,
  ) {
    this.readOnly = readOnly;
    this.chunkBytes = table.dataBlockSize * SECTOR_SIZE;
    if (md.needsCheck) {
      // The kernel: "unable to switch pool to write mode until repaired".
      this.health = 'ro';
      this.why = `needs_check is set in the superblock (a metadata operation or a sync failed while the pool was open). ${this.repairAdvice()}`;
    } else if (!readOnly && md.spaceUsage().dataFree === 0 && md.nrDataBlocks > 0) {
      this.health = 'out_of_data_space';
    }
  }

  get mode(): PoolHealth {
    return this.health;
  }

  /** Why the pool is `ro` or `fail`; undefined while it is healthy. */
  get modeReason(): string | undefined {
    return this.why;
  }

  /** Provisioning, unmapping, messages and commits are allowed (`rw` or `out_of_data_space`, writable, open). */
  get canChangeMetadata(): boolean {
    return !this.readOnly && !this.closed && (this.health === 'rw' || this.health === 'out_of_data_space');
  }

  // ------------------------------------------------------------------ devices

  requireDevice(id: number): void {
    if (!this.md.hasDevice(id)) throw new ThinError('E_NO_DEVICE', `thin device ${id} does not exist in pool ${this.dir}`, { device: id });
  }

  /** A thin device's size in bytes (from the table; defaults to the data device size). */
  deviceSize(id: number): number {
    this.requireDevice(id);
    return this.table.thins[id]?.size ?? this.md.nrDataBlocks * this.chunkBytes;
  }

  /** The device's gate: shared for I/O, exclusive while a message (snapshot, delete) quiesces it. */
  devGate(id: number): Gate {
    this.requireDevice(id);
    let g = this.devGates.get(id);
    if (!g) { g = new Gate(); this.devGates.set(id, g); }
    return g;
  }

  forgetDevice(id: number): void {
    this.devGates.delete(id);
  }

  saveTable(): void {
    saveTable(this.dir, this.table);
  }

  // ------------------------------------------------------------------ what may run

  /** Open and not failed: reads may run. */
  assertServing(): void {
    if (this.closed) throw new ThinError('E_CLOSED', `pool ${this.dir} is closed`);
    if (this.health === 'fail') throw this.failError();
  }

  /** Serving and opened for writing: overwrites of mapped chunks may run (also in `ro`). */
  assertWritable(): void {
    this.assertServing();
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `pool ${this.dir} is open read-only`);
  }

  /** Writable and healthy: provisioning, unmapping, messages and resizes may run. */
  assertCanChangeMetadata(): void {
    this.assertWritable();
    if (this.health === 'ro') {
      throw new ThinError('E_READ_ONLY', `pool ${this.dir} is read-only: ${this.why}. ${this.repairAdvice()}`, { file: this.metadataFile, mode: 'ro' });
    }
  }

  /** What to do about needs_check. */
  repairAdvice(): string {
    return `Close the pool, run "thin_check ${this.metadataFile}" (or "thinsim check ${this.dir}"), repair if it reports damage, ` +
      `then clear the flag with "thin_check --clear-needs-check-flag ${this.metadataFile}" before writing again`;
  }

  private failError(): ThinError {
    return new ThinError('E_IO', `pool ${this.dir} is in fail mode: ${this.why}; every request fails. ${this.repairAdvice()}`, { file: this.metadataFile, mode: 'fail' });
  }

  /** Why a flush or commit cannot be reported durable now. */
  private notDurable(): ThinError {
    if (this.health === 'fail') return this.failError();
    return new ThinError('E_IO', `pool ${this.dir} is read-only (${this.why}): nothing can be committed, so writes since the last commit cannot be made durable. ${this.repairAdvice()}`,
      { file: this.metadataFile, mode: this.health });
  }

  // ------------------------------------------------------------------ metadata

  /**
   * Run a metadata mutation (`op` names it in the failure). Refused (E_READ_ONLY) unless
   * the pool may change metadata; a failure is metadata_operation_failed (see the contract).
   */
  metadataOp<T>(op: string, fn: () => T): T {
    this.assertCanChangeMetadata();
    try {
      return fn();
    } catch (e) {
      if (isMetadataFailure(e)) this.metadataFailed(op, e);
      throw e;
    }
  }

  /**
   * Sync the data device; a failure turns the pool `ro` with needs_check (a commit cannot
   * follow it). The caller holds the pool gate (exclusively: no commit is writing).
   */
  async syncData(): Promise<void> {
    try {
      await this.data.sync();
    } catch (e) {
      this.metadataFailed(`sync of the data device ${this.data.path}`, e);
      throw e;
    }
  }

  /**
   * Commit the metadata (the caller holds the pool gate exclusively and synced the data),
   * then punch the blocks its unmaps freed (passdown).
   */
  async commitMetadata(): Promise<void> {
    try {
      await this.md.commitAsync();
    } catch (e) {
      if (isMetadataFailure(e)) this.metadataFailed('commit', e);
      throw e;
    }
    await this.punchFreed();
  }

  /**
   * Passdown: punch `blocks` (freed by an unmap in the open transaction) out of the data
   * device when that transaction commits. The caller holds the pool gate shared, so no
   * commit runs between the unmap and this call.
   */
  punchAfterCommit(blocks: readonly number[]): void {
    for (const b of blocks) this.punches.push(b);
  }

  /** Punch the committed transaction's freed blocks, in runs of consecutive blocks. */
  private async punchFreed(): Promise<void> {
    if (this.punches.length === 0) return;
    const freed = this.punches.sort((a, b) => a - b);
    this.punches = [];
    const cb = this.chunkBytes;
    for (let i = 0; i < freed.length;) {
      let j = i + 1;
      while (j < freed.length && freed[j] === freed[j - 1] + 1) j++;
      try {
        await this.data.zero(freed[i] * cb, (j - i) * cb, true);
      } catch (e) {
        const message = `discard passdown of data blocks ${freed[i]}..${j - 1} failed (${(e as Error)?.message ?? String(e)}); the blocks are free in the pool but still take space in ${this.data.path}`;
        this.events.emit('passdown-error', { firstBlock: freed[i], blocks: j - i, error: e, message } satisfies PassdownError);
      }
      i = j;
    }
  }

  /**
   * Sync the data device, then commit the metadata (superblock last). Provisioning
   * waits while the pool gate is held, so with `presync` (the periodic commit) the data
   * device is first synced without the gate, again while a pass takes long (at most
   * PRESYNC_PASSES): writes go on while the dirty data reaches the disk, and the sync
   * under the gate has only the last few milliseconds' writes to do.
   * A pool opened read-only has nothing to commit; one that is `ro` or `fail` fails with
   * E_IO, except for the periodic commit (`periodic`), which then has nothing to do.
   */
  async commit(opts: { presync?: boolean; periodic?: boolean } = {}): Promise<void> {
    if (this.readOnly || this.closed) return;
    if (!this.canChangeMetadata) {
      if (opts.periodic) return;
      throw this.notDurable();
    }
    if (opts.presync) {
      try {
        // Writes go on during a sync without the gate, and the sync under the gate has
        // what they wrote to do while provisioning waits: sync again while the last
        // pass took long, so little is left for the gated one.
        for (let pass = 0; pass < PRESYNC_PASSES; pass++) {
          const started = performance.now();
          await this.data.sync();
          if (performance.now() - started < PRESYNC_SHORT_MS) break;
        }
      } catch (e) {
        // Without the gate a commit may be writing: the rollback waits for it.
        const held = await this.poolGate.acquireExclusive();
        try {
          this.metadataFailed(`sync of the data device ${this.data.path}`, e);
        } finally {
          held();
        }
        throw e;
      }
    }
    const release = await this.poolGate.acquireExclusive();
    try {
      // Re-checked under the gate: the pool may have closed, turned read-only, or been
      // committed by someone else (nothing left to do for a periodic commit) meanwhile.
      if (this.closed) return;
      if (!this.canChangeMetadata) {
        if (opts.periodic) return;
        throw this.notDurable();
      }
      if (opts.presync && !this.md.dirty) return;
      await this.syncData();
      await this.commitMetadata();
      this.events.emit('commit', this.md.transactionId);
    } finally {
      release();
    }
    this.onSpaceAvailable();
  }

  /**
   * dm-thin's metadata_operation_failed: abort the open transaction, set needs_check on
   * disk, turn `ro`; `fail` if the abort or the flag write fails. Queued writers fail.
   * Runs with the pool gate held (shared by provisioning, exclusively by commits and
   * messages), so no commit is writing the superblock meanwhile.
   */
  private metadataFailed(op: string, cause: unknown): void {
    if (this.health === 'ro' || this.health === 'fail') return; // already done: the first failure is the reason
    const why = `${op} failed: ${(cause as Error)?.message ?? String(cause)}`;
    let mode: PoolHealth = 'ro';
    let reason = why;
    this.punches = []; // the aborted transaction's unmaps are undone: the blocks are in use again
    try {
      this.md.abort();
    } catch (e) {
      mode = 'fail';
      reason = `${why}; then aborting the metadata transaction failed: ${(e as Error)?.message ?? String(e)}`;
    }
    try {
      this.md.setNeedsCheck();
    } catch (e) {
      mode = 'fail';
      reason = `${reason}; then setting needs_check in the superblock failed: ${(e as Error)?.message ?? String(e)}`;
    }
    this.why = reason;
    this.setHealth(mode);
    this.failWaiters(mode === 'fail' ? this.failError() : new ThinError('E_READ_ONLY', `pool ${this.dir} turned read-only: ${reason}`, { mode }));
  }

  // ------------------------------------------------------------------ space

  /**
   * Move between `rw` and `out_of_data_space`, or into `ro`/`fail` (metadataFailed).
   * As in the kernel's set_pool_mode, `fail` is never left, and `ro` only for `fail`.
   */
  setHealth(h: PoolHealth): void {
    if (this.health === h || this.health === 'fail') return;
    if (this.health === 'ro' && h !== 'fail') return;
    this.health = h;
    this.events.emit('mode', h, this.why);
  }

  noSpace(): ThinError {
    return new ThinError('ENOSPC', `pool ${this.dir} is out of data space (${this.md.nrDataBlocks} blocks of ${this.chunkBytes} bytes all in use); grow it with "thinsim pool resize --data-size"`, { file: this.dir });
  }

  /** Raise 'low-water-mark' once per crossing of the table's threshold. */
  checkLowWater(): void {
    const free = this.md.spaceUsage().dataFree;
    if (free <= this.table.lowWaterMark && !this.lowWaterSignalled) {
      this.lowWaterSignalled = true;
      this.events.emit('low-water-mark', { free, lowWaterMark: this.table.lowWaterMark });
    }
  }

  /** After a resize: the next crossing of the low-water mark signals again. */
  rearmLowWater(): void {
    if (this.md.spaceUsage().dataFree > this.table.lowWaterMark) this.lowWaterSignalled = false;
  }

  /** Wait until space comes back (or fail after no_space_timeout). */
  waitForSpace(): Promise<void> {
    return new Promise<void>((wake, fail) => {
      const timer = setTimeout(() => {
        this.spaceWaiters = this.spaceWaiters.filter((w) => w.timer !== timer);
        fail(this.noSpace());
      }, this.noSpaceTimeoutMs);
      this.spaceWaiters.push({ wake, fail, timer });
    });
  }

  /** After a commit (freed blocks become allocatable) or a resize: leave out_of_data_space and wake queued writes. */
  onSpaceAvailable(): void {
    if (this.health !== 'out_of_data_space' || this.md.spaceUsage().dataFree === 0) return;
    this.setHealth('rw');
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) { clearTimeout(w.timer); w.wake(); }
  }

  failWaiters(e: Error): void {
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) { clearTimeout(w.timer); w.fail(e); }
  }
}

/** A failure of the metadata or a device, as opposed to a misuse that changed nothing. */
function isMetadataFailure(e: unknown): boolean {
  return !(isThinError(e) && MISUSE.has(e.code));
}

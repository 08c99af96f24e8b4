/**
 * What every part of an open pool shares: the table, the metadata, the data device,
 * the pool-wide gate, the pool's health and the space policy.
 *
 * Contract:
 * - One PoolState per open pool; the data path (data-path.ts), the messages
 *   (messages.ts) and the status reports (status.ts) all work through it, and
 *   Pool (pool.ts) owns its lifecycle.
 * - Every metadata mutation runs through `metadataOp`: running out of metadata
 *   space turns the pool read-only with needs_check set, as the kernel does, and
 *   nothing committed is lost.
 * - `commit()` takes the pool gate exclusively (in-flight provisioning finishes
 *   first, so a commit never captures an allocated but unmapped block), syncs the
 *   data device, then commits the metadata without blocking the event loop.
 * - Out of data space: `waitForSpace()` queues a writer until a commit frees blocks
 *   or a resize adds some (`onSpaceAvailable()`), or fails it after
 *   no_space_timeout; with error_if_no_space it fails at once.
 */
import type { EventEmitter } from 'events';
import { isThinError, ThinError } from '../errors';
import type { DataDevice } from '../io/data-device';
import type { ThinMetadata } from '../thin/metadata';
import { SECTOR_SIZE } from '../units';
import { Gate } from './gates';
import { PoolTable, saveTable } from './table';

export type PoolHealth = 'rw' | 'ro' | 'out_of_data_space';

interface SpaceWaiter { wake: () => void; fail: (e: Error) => void; timer: NodeJS.Timeout }

export class PoolState {
  readonly chunkBytes: number;
  readonly readOnly: boolean;
  /** Held shared by provisioning and unmapping; exclusively by commits and messages. */
  readonly poolGate = new Gate();
  private readonly devGates = new Map<number, Gate>();
  private health: PoolHealth = 'rw';
  private lowWaterSignalled = false;
  private spaceWaiters: SpaceWaiter[] = [];
  closed = false;

  constructor(
    readonly dir: string,
    readonly table: PoolTable,
    readonly md: ThinMetadata,
    readonly data: DataDevice,
    private readonly events: EventEmitter,
    readonly noSpaceTimeoutMs: number,
    readOnly: boolean,
  ) {
    this.readOnly = readOnly;
    this.chunkBytes = table.dataBlockSize * SECTOR_SIZE;
    if (md.needsCheck) this.health = 'ro';
    else if (!readOnly && md.spaceUsage().dataFree === 0 && md.nrDataBlocks > 0) this.health = 'out_of_data_space';
  }

  get mode(): PoolHealth {
    return this.health;
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

  assertOpenForWrite(): void {
    if (this.closed) throw new ThinError('E_CLOSED', `pool ${this.dir} is closed`);
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `pool ${this.dir} is open read-only`);
    if (this.health === 'ro') throw new ThinError('E_READ_ONLY', `pool ${this.dir} is read-only (needs_check is set); run "thinsim check" and repair`);
  }

  // ------------------------------------------------------------------ metadata

  /** Run a metadata mutation; metadata exhaustion turns the pool read-only with needs_check. */
  metadataOp<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isThinError(e, 'E_NO_METADATA_SPACE')) this.failMetadata();
      throw e;
    }
  }

  /** Commit the metadata (the caller holds the pool gate exclusively and synced the data). */
  async commitMetadata(): Promise<void> {
    try {
      await this.md.commitAsync();
    } catch (e) {
      if (isThinError(e, 'E_NO_METADATA_SPACE')) this.failMetadata();
      throw e;
    }
  }

  /**
   * Sync the data device, then commit the metadata (superblock last). Provisioning
   * waits while the pool gate is held, so with `presync` (the periodic commit) the data
   * device is first synced without the gate: writes go on while most of the dirty data
   * reaches the disk, and the sync under the gate has only the rest to do.
   */
  async commit(opts: { presync?: boolean } = {}): Promise<void> {
    if (!this.commitAllowed()) return;
    if (opts.presync) await this.data.sync();
    const release = await this.poolGate.acquireExclusive();
    try {
      // Re-checked under the gate: the pool may have closed, turned read-only, or been
      // committed by someone else (nothing left to do for a periodic commit) meanwhile.
      if (!this.commitAllowed() || (opts.presync && !this.md.dirty)) return;
      await this.data.sync();
      await this.commitMetadata();
      this.events.emit('commit', this.md.transactionId);
    } finally {
      release();
    }
    this.onSpaceAvailable();
  }

  /** Writable, healthy and open: a commit has something it may write. */
  private commitAllowed(): boolean {
    return !this.readOnly && this.health !== 'ro' && !this.closed;
  }

  private failMetadata(): void {
    this.md.abort();
    this.md.setNeedsCheck();
    this.setHealth('ro');
    this.failWaiters(new ThinError('E_READ_ONLY', 'pool turned read-only: out of metadata space'));
  }

  // ------------------------------------------------------------------ space

  setHealth(h: PoolHealth): void {
    if (this.health === h) return;
    this.health = h;
    this.events.emit('mode', h);
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

/**
 * The pool engine: the kernel's dm-thin target in userspace. This is the interface
 * file of the pool layer.
 *
 * Contract:
 * - A Pool is a table (pool.json), a data device and a metadata device. One process
 *   opens it read-write at a time (PoolLock); read-only opens see the committed state.
 * - Data path (read/write/discard) takes byte offsets and lengths of any alignment and
 *   is asynchronous; any number of requests may be in flight:
 *   - requests touching one chunk run in the order they were issued (a FIFO lock per
 *     chunk, registered synchronously when the request is made);
 *   - a first write to an unmapped chunk allocates, writes the data (zero-filling the
 *     rest unless skip_block_zeroing) and only then maps it, so metadata never points
 *     at unwritten data;
 *   - a write to a shared chunk (mapping time older than the device's snapshotted
 *     time) copies the chunk to a new block, applies the write and remaps; the
 *     snapshot keeps its bytes;
 *   - discard unmaps whole chunks and zeroes partial ones; a data block whose count
 *     reaches 0 is punched out of the data file when discards are passed down.
 * - `flush()` makes every completed write durable: data device sync, then metadata
 *   commit (superblock last). The pool also commits about once a second.
 * - A commit waits for in-flight provisioning (allocated but not yet mapped) to
 *   finish, so it never captures a leaked or unwritten block.
 * - Out of data space: ENOSPC at once with error_if_no_space, otherwise writes wait
 *   up to no_space_timeout for a resize. Out of metadata space: the pool turns
 *   read-only with needs_check set; nothing committed is lost.
 * - Events: 'low-water-mark' (once per crossing), 'mode' (rw/ro/out_of_data_space),
 *   'commit', 'error' is never emitted; failures reject the request that caused them.
 */
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { ioError, isThinError, ThinError } from '../errors';
import { hot } from '../hot';
import { blockDeviceSize, FileDevice } from '../io/file-device';
import { checkMetadata, CheckReport } from '../thin/check';
import { lsDevices } from '../thin/device-usage';
import { ThinMetadata } from '../thin/metadata';
import type { LsDevice } from '../thin/report/ls-format';
import { checkDataBlockSize, SECTOR_SIZE } from '../units';
import { DataDevice } from './data-device';
import { Gate, KeyedMutex } from './locks';
import { PoolLock } from './lock';
import { DiscardMode, defaultFeatures, discardMode, loadTable, PoolMode, PoolTable, resolveDev, saveTable, TABLE_FILE } from './table';

export type PoolHealth = 'rw' | 'ro' | 'out_of_data_space';

export interface CreateOptions {
  /** Bytes (default 100 GiB, Docker's loop-lvm default). */
  dataSize?: number;
  /** Bytes (default 2 GiB). */
  metadataSize?: number;
  /** Data block size in sectors (default 128 = 64 KiB). */
  blockSize?: number;
  mode?: PoolMode;
  dataDev?: string;
  metadataDev?: string;
  lowWaterMark?: number;
  /** Zero the unwritten part of newly provisioned chunks (default true). */
  zero?: boolean;
  discard?: DiscardMode;
  errorIfNoSpace?: boolean;
  /** Seconds writes wait for a resize when out of space (default 60). */
  noSpaceTimeout?: number;
  /** The read_only feature: after creation the pool only serves reads. */
  readOnly?: boolean;
}

export interface OpenOptions {
  readOnly?: boolean;
  /** Periodic commit interval in ms (default 1000; 0 disables). */
  commitInterval?: number;
  /** Override the table's no_space_timeout (ms). */
  noSpaceTimeoutMs?: number;
  /** Metadata blocks to cache. */
  cacheBlocks?: number;
}

export interface PoolStatus {
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  heldRoot: number;
  mode: PoolHealth;
  discard: 'discard_passdown' | 'no_discard_passdown' | 'ignore_discard';
  noSpacePolicy: 'queue_if_no_space' | 'error_if_no_space';
  needsCheck: boolean;
  metadataLowWatermark: number;
  /** The kernel's status line (dmsetup status <pool>), without the "start length thin-pool" prefix. */
  line: string;
  dataBlockSize: number;
  lowWaterMark: number;
  dataFile: string;
  metadataFile: string;
  backend: PoolMode;
  /** Free bytes on the host filesystem holding the data file (loop-lvm), if known. */
  hostFreeBytes?: number;
  lockedBy?: number;
}

export interface ThinStatus {
  id: number;
  size: number;
  mappedSectors: number;
  /** Highest mapped sector, or undefined when nothing is mapped ("-" in dmsetup). */
  highestMappedSector: number | undefined;
  line: string;
}

/** Docker's defaults for loop-lvm. */
export const DEFAULT_DATA_SIZE = 100 * 2 ** 30;
export const DEFAULT_METADATA_SIZE = 2 * 2 ** 30;
export const DEFAULT_BLOCK_SECTORS = 128;

type Release = () => void;

export class Pool extends EventEmitter {
  readonly dir: string;
  readonly table: PoolTable;
  readonly md: ThinMetadata;
  readonly data: DataDevice;
  readonly readOnly: boolean;
  readonly chunkBytes: number;
  private readonly lock: PoolLock | undefined;
  private health: PoolHealth = 'rw';
  private readonly poolGate = new Gate();
  private readonly devGates = new Map<number, Gate>();
  private readonly chunks = new KeyedMutex<string>();
  private lowWaterSignalled = false;
  private spaceWaiters: Array<{ wake: () => void; fail: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private timer: NodeJS.Timeout | undefined;
  private freed: number[] = [];
  private closed = false;
  private closing = false;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly noSpaceTimeoutMs: number;

  private constructor(dir: string, table: PoolTable, md: ThinMetadata, data: DataDevice, lock: PoolLock | undefined, opts: OpenOptions) {
    super();
    this.dir = dir;
    this.table = table;
    this.md = md;
    this.data = data;
    this.lock = lock;
    this.readOnly = !!opts.readOnly || table.features.readOnly;
    this.chunkBytes = table.dataBlockSize * SECTOR_SIZE;
    this.noSpaceTimeoutMs = opts.noSpaceTimeoutMs ?? table.noSpaceTimeout * 1000;
    md.onDataBlockFreed = (b) => this.freed.push(b);
    this.reconcileTable();
    if (md.needsCheck) this.health = 'ro';
    else if (!this.readOnly && md.nrFreeDataBlocks === 0 && md.nrDataBlocks > 0) this.health = 'out_of_data_space';
    const every = opts.commitInterval ?? 1000;
    if (!this.readOnly && every > 0) {
      this.timer = setInterval(() => { if (this.md.dirty && !this.poolGate.busy) this.commit().catch(() => undefined); }, every);
      this.timer.unref();
    }
  }

  // ------------------------------------------------------------------ lifecycle

  /** Drop table entries for devices the metadata does not have (a crash between the two writes). */
  private reconcileTable(): void {
    const stale = Object.keys(this.table.thins).filter((k) => !this.md.hasDevice(Number(k)));
    if (stale.length === 0) return;
    for (const k of stale) delete this.table.thins[k];
    if (!this.readOnly) this.saveTable();
  }

  /**
   * Create a pool directory. Sparse files for loop-lvm; preallocated files (or the
   * given block devices) for direct-lvm. A metadata device that already holds a
   * dm-thin superblock is adopted, as the kernel does; only an all-zero one is
   * formatted.
   */
  static create(dir: string, opts: CreateOptions = {}): Pool {
    const mode = opts.mode ?? 'loop-lvm';
    const blockSize = checkDataBlockSize(opts.blockSize ?? DEFAULT_BLOCK_SECTORS);
    if (fs.existsSync(path.join(dir, TABLE_FILE))) {
      throw new ThinError('E_DEVICE_EXISTS', `${dir} already holds a pool (${TABLE_FILE}); open it, or remove the directory first`, { file: dir });
    }
    fs.mkdirSync(dir, { recursive: true });
    const dataDev = opts.dataDev ? path.resolve(opts.dataDev) : 'data';
    const metadataDev = opts.metadataDev ? path.resolve(opts.metadataDev) : 'metadata';
    const dataPath = resolveDev(dir, dataDev);
    const metaPath = resolveDev(dir, metadataDev);
    prepareFile(dataPath, opts.dataDev ? opts.dataSize : opts.dataSize ?? DEFAULT_DATA_SIZE, mode, 'data');
    prepareFile(metaPath, opts.metadataDev ? opts.metadataSize : opts.metadataSize ?? DEFAULT_METADATA_SIZE, mode, 'metadata');
    const features = { ...defaultFeatures(), skipBlockZeroing: opts.zero === false, errorIfNoSpace: !!opts.errorIfNoSpace, readOnly: !!opts.readOnly };
    if (opts.discard === 'ignore') features.ignoreDiscard = true;
    if (opts.discard === 'nopassdown') features.noDiscardPassdown = true;
    const table: PoolTable = {
      version: 1, mode, dataDev, metadataDev, dataBlockSize: blockSize, lowWaterMark: opts.lowWaterMark ?? 0,
      features, noSpaceTimeout: opts.noSpaceTimeout ?? 60, thins: {},
    };
    const chunk = blockSize * SECTOR_SIZE;
    const metaDev = new FileDevice(metaPath);
    try {
      const nrDataBlocks = Math.floor(fileSize(dataPath) / chunk);
      if (ThinMetadata.hasSuperblock(metaDev)) {
        const md = ThinMetadata.open(metaDev);
        if (md.dataBlockSize !== blockSize) {
          throw new ThinError('E_INVALID', `the metadata on ${metaPath} uses a data block size of ${md.dataBlockSize} sectors, not ${blockSize}; pass --block-size ${md.dataBlockSize * SECTOR_SIZE / 1024}K`, { file: metaPath });
        }
        if (nrDataBlocks > md.nrDataBlocks) { md.growData(nrDataBlocks); md.commit(); }
        for (const id of md.devices()) table.thins[id] = { size: nrDataBlocks * chunk };
      } else {
        ThinMetadata.format(metaDev, { dataBlockSize: blockSize, nrDataBlocks });
      }
    } finally {
      metaDev.close();
    }
    saveTable(dir, table);
    return Pool.open(dir);
  }

  static open(dir: string, opts: OpenOptions = {}): Pool {
    const table = loadTable(dir);
    const readOnly = !!opts.readOnly;
    const lock = readOnly ? undefined : PoolLock.acquire(dir);
    try {
      const metaDev = new FileDevice(resolveDev(dir, table.metadataDev), { readOnly });
      let md: ThinMetadata;
      try {
        md = ThinMetadata.open(metaDev, { cacheBlocks: opts.cacheBlocks });
      } catch (e) {
        metaDev.close();
        throw e;
      }
      const data = new DataDevice(resolveDev(dir, table.dataDev), { direct: table.mode === 'direct-lvm', readOnly });
      return new Pool(dir, table, md, data, lock, { ...opts, readOnly: readOnly || table.features.readOnly });
    } catch (e) {
      lock?.release();
      throw e;
    }
  }

  /** Commit (when writable) and release everything. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    // Every request already issued finishes (or fails) before the files close.
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    try {
      if (!this.readOnly && this.health !== 'ro') await this.commit();
    } finally {
      this.closed = true;
      for (const w of this.spaceWaiters) { clearTimeout(w.timer); w.fail(new ThinError('E_IO', 'pool closed')); }
      this.spaceWaiters = [];
      this.md.close();
      this.data.close();
      this.lock?.release();
    }
  }

  get mode(): PoolHealth {
    return this.health;
  }

  // ------------------------------------------------------------------ devices

  devices(): number[] {
    return this.md.devices();
  }

  /** A thin device's size in bytes (from the table; defaults to the data device size). */
  deviceSize(id: number): number {
    this.requireDevice(id);
    return this.table.thins[id]?.size ?? this.md.nrDataBlocks * this.chunkBytes;
  }

  async createThin(id: number, size: number): Promise<void> {
    this.checkSize(size);
    await this.withTableEntry(id, size, () => this.metadataMessage(undefined, () => this.md.createThin(id)));
  }

  async createSnap(id: number, origin: number, size?: number): Promise<void> {
    const originSize = this.deviceSize(origin);
    if (size !== undefined) this.checkSize(size);
    await this.withTableEntry(id, size ?? originSize, () => this.metadataMessage(origin, () => this.md.createSnap(id, origin)));
  }

  /**
   * The size goes into pool.json before the device is committed to metadata, so a
   * crash in between leaves an entry without a device, which open() drops; never a
   * device without its size.
   */
  private async withTableEntry(id: number, size: number, create: () => Promise<void>): Promise<void> {
    this.assertOpenForWrite();
    if (this.md.hasDevice(id)) throw new ThinError('E_DEVICE_EXISTS', `thin device ${id} already exists`, { device: id });
    const before = this.table.thins[id];
    this.table.thins[id] = { size };
    this.saveTable();
    try {
      await create();
    } catch (e) {
      if (before) this.table.thins[id] = before; else delete this.table.thins[id];
      this.saveTable();
      throw e;
    }
  }

  async deleteDevice(id: number): Promise<void> {
    this.requireDevice(id);
    await this.metadataMessage(id, () => this.md.deleteDevice(id));
    this.devGates.delete(id);
    delete this.table.thins[id];
    this.saveTable();
  }

  async setTransactionId(current: number, next: number): Promise<void> {
    await this.metadataMessage(undefined, () => this.md.setTransactionId(current, next));
  }

  async reserveMetadataSnap(): Promise<number> {
    let at = 0;
    await this.metadataMessage(undefined, () => { at = this.md.reserveMetadataSnap(); });
    return at;
  }

  async releaseMetadataSnap(): Promise<void> {
    await this.metadataMessage(undefined, () => this.md.releaseMetadataSnap());
  }

  /** The dm-thin pool messages, as `dmsetup message <pool> 0 ...` takes them. */
  async message(words: string[]): Promise<void> {
    const [verb, ...args] = words;
    const num = (s: string | undefined, what: string) => {
      if (s === undefined || !/^\d+$/.test(s)) throw new ThinError('E_INVALID', `${verb}: ${what} must be a whole number, got ${s ?? 'nothing'}`);
      return Number(s);
    };
    const arity = (n: number, usage: string) => {
      if (args.length !== n) throw new ThinError('E_INVALID', `usage: ${usage}`);
    };
    switch (verb) {
      case 'create_thin': arity(1, 'create_thin <dev_id>'); return this.createThin(num(args[0], 'dev_id'), this.md.nrDataBlocks * this.chunkBytes);
      case 'create_snap': arity(2, 'create_snap <dev_id> <origin_id>'); return this.createSnap(num(args[0], 'dev_id'), num(args[1], 'origin_id'));
      case 'delete': arity(1, 'delete <dev_id>'); return this.deleteDevice(num(args[0], 'dev_id'));
      case 'set_transaction_id': arity(2, 'set_transaction_id <current_id> <new_id>'); return this.setTransactionId(num(args[0], 'current_id'), num(args[1], 'new_id'));
      case 'reserve_metadata_snap': arity(0, 'reserve_metadata_snap'); await this.reserveMetadataSnap(); return;
      case 'release_metadata_snap': arity(0, 'release_metadata_snap'); return this.releaseMetadataSnap();
      default:
        throw new ThinError('E_INVALID', `unknown pool message "${verb ?? ''}"; use create_thin, create_snap, delete, set_transaction_id, reserve_metadata_snap or release_metadata_snap`);
    }
  }

  // ------------------------------------------------------------------ data path

  /** Read `length` bytes at `offset` of thin device `id`; unmapped ranges read as zeros. */
  read(id: number, offset: number, length: number): Promise<Buffer> {
    return this.request(() => this.read_(id, offset, length));
  }

  private read_(id: number, offset: number, length: number): Promise<Buffer> {
    const pieces = this.pieces(id, offset, length);
    const gate = this.devGate(id).acquireShared();
    const locks = pieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, locks, async () => {
      // Not zero-filled: every byte below is either read or zeroed (unmapped), and the
      // buffer is dropped if a read fails. Zeroing 1 MiB costs as much as copying it.
      // allocUnsafeSlow, not allocUnsafe: the buffer owns its memory, as Buffer.alloc did.
      const out = Buffer.allocUnsafeSlow(length);
      // Hold every chunk of the request, then read each run of chunks that lie next to
      // each other on the data device with one request: sequential provisioning makes
      // that the common case, and a 1 MiB read is then one pread instead of 16 trips
      // through the thread pool. No deadlock: chunk locks are queued in issue order.
      const unlocks = await Promise.all(locks);
      try {
        const cb = this.chunkBytes;
        const reads: Promise<void>[] = [];
        let run: { dev: number; at: number; len: number } | undefined;
        const blocks = this.mappedBlocks(id, pieces);
        for (let i = 0; i < pieces.length; i++) {
          const p = pieces[i];
          const dev = blocks[i] >= 0 ? blocks[i] * cb + p.off : -1;
          if (dev < 0) out.fill(0, p.at, p.at + p.len);
          if (run && dev >= 0 && dev === run.dev + run.len) {
            run.len += p.len;
            continue;
          }
          if (run) reads.push(this.data.read(out.subarray(run.at, run.at + run.len), run.dev));
          run = dev >= 0 ? { dev, at: p.at, len: p.len } : undefined;
        }
        if (run) reads.push(this.data.read(out.subarray(run.at, run.at + run.len), run.dev));
        // Settle every read before the chunks are unlocked, even when one fails.
        const failed = (await Promise.allSettled(reads)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        for (const unlock of unlocks) unlock();
      }
      return out;
    });
  }

  /** Write `data` at `offset` of thin device `id`. */
  write(id: number, offset: number, data: Uint8Array): Promise<void> {
    return this.request(() => this.write_(id, offset, data));
  }

  private write_(id: number, offset: number, data: Uint8Array): Promise<void> {
    this.assertWritable();
    const pieces = this.pieces(id, offset, data.length);
    const gate = this.devGate(id).acquireShared();
    const locks = pieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, locks, async () => {
      await Promise.all(pieces.map(async (p, i) => {
        const unlock = await locks[i];
        try {
          await this.writeChunk(id, p.vblock, p.off, data.subarray(p.at, p.at + p.len));
        } finally {
          unlock();
        }
      }));
    });
  }

  /**
   * Discard: whole chunks are unmapped (and, with passdown, freed blocks punched out
   * of the data file); the partial chunks at either end are zeroed.
   */
  discard(id: number, offset: number, length: number): Promise<void> {
    return this.request(() => this.discard_(id, offset, length));
  }

  /** Start a data-path request: refused once closing; tracked so close() can wait for it. */
  private request<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing || this.closed) return Promise.reject(new ThinError('E_INVALID', `pool ${this.dir} is closing; the request was not started`));
    const p = rejectOnThrow(fn);
    this.inflight.add(p);
    const done = () => { this.inflight.delete(p); };
    p.then(done, done);
    return p;
  }

  private discard_(id: number, offset: number, length: number): Promise<void> {
    this.assertWritable();
    const pieces = this.pieces(id, offset, length);
    if (this.table.features.ignoreDiscard) return Promise.resolve();
    const whole = pieces.filter((p) => p.len === this.chunkBytes);
    const partial = pieces.filter((p) => p.len !== this.chunkBytes);
    // Large ranges take the device exclusively and unmap with one range removal.
    const big = whole.length > 64;
    const gate = big ? this.devGate(id).acquireExclusive() : this.devGate(id).acquireShared();
    const lockPieces = big ? partial : pieces;
    const locks = lockPieces.map((p) => this.chunks.lock(key(id, p.vblock)));
    return this.run(gate, locks, async () => {
      await Promise.all(lockPieces.map(async (p, i) => {
        const unlock = await locks[i];
        try {
          if (p.len === this.chunkBytes) await this.unmap(id, p.vblock, p.vblock + 1);
          else if (this.md.lookup(id, p.vblock)) await this.writeChunk(id, p.vblock, p.off, new Uint8Array(p.len));
        } finally {
          unlock();
        }
      }));
      if (big) await this.unmap(id, whole[0].vblock, whole[whole.length - 1].vblock + 1);
    });
  }

  /** Make every completed write durable: sync data, then commit metadata. */
  async flush(): Promise<void> {
    await this.commit();
  }

  /** Commit: wait for in-flight provisioning, sync the data device, commit metadata. */
  async commit(): Promise<void> {
    if (this.readOnly || this.health === 'ro' || this.closed) return;
    const release = await this.poolGate.acquireExclusive();
    try {
      await this.data.sync();
      await this.metadataOp(() => this.md.commitAsync());
      this.emit('commit', this.md.transactionId);
    } finally {
      release();
    }
    this.onSpaceAvailable();
  }

  /** After a commit (freed blocks become allocatable) or a resize: leave out_of_data_space and wake queued writes. */
  private onSpaceAvailable(): void {
    if (this.health !== 'out_of_data_space' || this.md.nrFreeDataBlocks === 0) return;
    this.setHealth('rw');
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) { clearTimeout(w.timer); w.wake(); }
  }

  /** Grow the data and/or metadata device (never shrink). Wakes writes waiting for space. */
  async resize(opts: { dataSize?: number; metadataSize?: number }): Promise<void> {
    this.assertOpenForWrite();
    if (opts.dataSize !== undefined) {
      const blocks = Math.floor(opts.dataSize / this.chunkBytes);
      if (blocks < this.md.nrDataBlocks) {
        throw new ThinError('E_UNSUPPORTED', `cannot shrink the data device from ${this.md.nrDataBlocks * this.chunkBytes} to ${opts.dataSize} bytes; dm-thin pools only grow`, { from: this.md.nrDataBlocks, to: blocks });
      }
      this.data.grow(blocks * this.chunkBytes);
      this.md.growData(blocks);
    }
    if (opts.metadataSize !== undefined) this.md.growMetadata(opts.metadataSize);
    if (this.md.nrFreeDataBlocks > this.table.lowWaterMark) this.lowWaterSignalled = false;
    this.onSpaceAvailable();
    await this.commit();
  }

  // ------------------------------------------------------------------ status

  status(): PoolStatus {
    const md = this.md;
    const space = md.spaceUsage();
    const committed = md.committedSuperblock();
    const f = this.table.features;
    const discard = f.ignoreDiscard ? 'ignore_discard' : f.noDiscardPassdown ? 'no_discard_passdown' : 'discard_passdown';
    const noSpacePolicy = f.errorIfNoSpace ? 'error_if_no_space' : 'queue_if_no_space';
    const mode: PoolHealth = md.needsCheck || f.readOnly ? 'ro' : this.health;
    // The kernel warns when free metadata falls below min(total / 4, 4096 blocks) (dm-thin.c).
    const metadataLowWatermark = Math.min(Math.floor(space.metadataBlocks / 4), 4096);
    const held = committed.heldRoot;
    const line = `${committed.transactionId} ${space.metadataUsed}/${space.metadataBlocks} ${space.dataUsed}/${space.dataBlocks} ${held || '-'} ${mode} ${discard} ${noSpacePolicy} ${md.needsCheck ? 'needs_check' : '-'} ${metadataLowWatermark}`;
    let hostFreeBytes: number | undefined;
    if (this.table.mode === 'loop-lvm') {
      try {
        const st = fs.statfsSync(resolveDev(this.dir, this.table.dataDev));
        hostFreeBytes = st.bavail * st.bsize;
      } catch { /* not available */ }
    }
    return {
      transactionId: committed.transactionId, usedMetadataBlocks: space.metadataUsed, totalMetadataBlocks: space.metadataBlocks,
      usedDataBlocks: space.dataUsed, totalDataBlocks: space.dataBlocks, heldRoot: held, mode, discard, noSpacePolicy,
      needsCheck: md.needsCheck, metadataLowWatermark, line, dataBlockSize: this.table.dataBlockSize, lowWaterMark: this.table.lowWaterMark,
      dataFile: resolveDev(this.dir, this.table.dataDev), metadataFile: resolveDev(this.dir, this.table.metadataDev),
      backend: this.table.mode, hostFreeBytes, lockedBy: this.readOnly ? PoolLock.holder(this.dir) : process.pid,
    };
  }

  /** thin_ls's numbers for every device (mapped, exclusive, shared blocks; times). */
  sharing(): LsDevice[] {
    return lsDevices(this.md);
  }

  /** A full check of the committed metadata of the pool in `dir` (read-only; works while it is open). */
  static check(dir: string): CheckReport {
    const table = loadTable(dir);
    const dev = new FileDevice(resolveDev(dir, table.metadataDev), { readOnly: true });
    try {
      return checkMetadata(dev);
    } finally {
      dev.close();
    }
  }

  /**
   * Which bytes of [offset, offset+length) of thin device `id` are provisioned:
   * runs of whole chunks (clipped to the range), in order, covering the range
   * exactly. Unprovisioned runs read as zeros. What NBD's base:allocation reports.
   */
  blockStatus(id: number, offset: number, length: number): Array<{ offset: number; length: number; mapped: boolean }> {
    this.requireDevice(id);
    const pieces = this.pieces(id, offset, length);
    const out: Array<{ offset: number; length: number; mapped: boolean }> = [];
    if (pieces.length === 0) return out;
    const first = pieces[0].vblock;
    const mapped = new Uint8Array(pieces.length);
    for (const [vblock] of this.md.mappings(id, first, first + pieces.length)) mapped[vblock - first] = 1;
    for (let i = 0; i < pieces.length; i++) {
      const m = mapped[i] === 1;
      const last = out[out.length - 1];
      if (last && last.mapped === m) last.length += pieces[i].len;
      else out.push({ offset: offset + pieces[i].at, length: pieces[i].len, mapped: m });
    }
    return out;
  }

  thinStatus(id: number): ThinStatus {
    const d = this.md.deviceDetails(id);
    const bs = this.table.dataBlockSize;
    const hi = this.md.highestMapped(id);
    const mappedSectors = d.mappedBlocks * bs;
    const highestMappedSector = hi === undefined ? undefined : (hi + 1) * bs - 1;
    return { id, size: this.deviceSize(id), mappedSectors, highestMappedSector, line: `${mappedSectors} ${highestMappedSector ?? '-'}` };
  }

  // ------------------------------------------------------------------ internals

  private async writeChunk(id: number, vblock: number, off: number, buf: Uint8Array): Promise<void> {
    const cb = this.chunkBytes;
    const m = this.md.lookup(id, vblock);
    if (m && !this.md.isShared(id, m)) {
      await this.data.write(buf, m.block * cb + off);
      return;
    }
    const hold = { release: await this.poolGate.acquireShared() };
    try {
      this.assertWritable();
      const b = await this.allocate(hold);
      try {
        const dst = b * cb;
        if (off === 0 && buf.length === cb) {
          await this.data.write(buf, dst);
        } else if (m) {
          await this.data.copy(m.block * cb, dst, cb);
          await this.data.write(buf, dst + off);
        } else if (!this.table.features.skipBlockZeroing) {
          const chunk = new Uint8Array(cb);
          chunk.set(buf, off);
          await this.data.write(chunk, dst);
        } else {
          await this.data.write(buf, dst + off);
        }
      } catch (e) {
        if (this.health !== 'ro') this.metadataOp(() => this.md.releaseDataBlock(b));
        throw e;
      }
      this.metadataOp(() => this.md.insertMapping(id, vblock, b));
    } finally {
      hold.release();
    }
  }

  /** Unmap [from, to) of `id` and punch the blocks that became free (passdown). */
  private async unmap(id: number, from: number, to: number): Promise<void> {
    const release = await this.poolGate.acquireShared();
    try {
      this.assertWritable();
      this.freed = [];
      this.metadataOp(() => { if (to - from === 1) this.md.removeMapping(id, from); else this.md.removeRange(id, from, to); });
      const freed = this.freed.sort((a, b) => a - b);
      this.freed = [];
      if (discardMode(this.table.features) !== 'passdown') return;
      for (let i = 0; i < freed.length;) {
        let j = i + 1;
        while (j < freed.length && freed[j] === freed[j - 1] + 1) j++;
        await this.data.zero(freed[i] * this.chunkBytes, (j - i) * this.chunkBytes, true);
        i = j;
      }
    } finally {
      release();
    }
  }

  /** Allocate a data block, waiting for space (or failing) as the no-space policy says. */
  private async allocate(hold: { release: Release }): Promise<number> {
    for (let committed = false; ;) {
      const b = this.metadataOp(() => this.md.allocateDataBlock());
      if (b >= 0) {
        this.checkLowWater();
        return b;
      }
      if (!committed && this.md.nrFreeDataBlocks > 0) {
        // Blocks freed in this transaction become usable after a commit (kernel: commit and retry).
        hold.release();
        await this.commit();
        hold.release = await this.poolGate.acquireShared();
        committed = true;
        continue;
      }
      this.setHealth('out_of_data_space');
      if (this.table.features.errorIfNoSpace || this.noSpaceTimeoutMs <= 0) throw this.noSpace();
      hold.release();
      try {
        await new Promise<void>((wake, fail) => {
          const timer = setTimeout(() => {
            this.spaceWaiters = this.spaceWaiters.filter((w) => w.timer !== timer);
            fail(this.noSpace());
          }, this.noSpaceTimeoutMs);
          this.spaceWaiters.push({ wake, fail, timer });
        });
      } finally {
        hold.release = await this.poolGate.acquireShared();
      }
      committed = false;
    }
  }

  private noSpace(): ThinError {
    return new ThinError('ENOSPC', `pool ${this.dir} is out of data space (${this.md.nrDataBlocks} blocks of ${this.chunkBytes} bytes all in use); grow it with "thinsim pool resize --data-size"`, { file: this.dir });
  }

  private checkLowWater(): void {
    const free = this.md.nrFreeDataBlocks;
    if (free <= this.table.lowWaterMark && !this.lowWaterSignalled) {
      this.lowWaterSignalled = true;
      this.emit('low-water-mark', { free, lowWaterMark: this.table.lowWaterMark });
    }
  }

  /** Run a metadata mutation; metadata exhaustion turns the pool read-only with needs_check. */
  private metadataOp<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isThinError(e, 'E_NO_METADATA_SPACE')) this.failMetadata();
      throw e;
    }
  }

  private failMetadata(): void {
    this.md.abort();
    this.md.setNeedsCheck();
    this.setHealth('ro');
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) { clearTimeout(w.timer); w.fail(new ThinError('E_READ_ONLY', 'pool turned read-only: out of metadata space')); }
  }

  private setHealth(h: PoolHealth): void {
    if (this.health === h) return;
    this.health = h;
    this.emit('mode', h);
  }

  /**
   * A metadata message (create, snapshot, delete, ...): quiesce the device it touches
   * (as the kernel requires the origin suspended), then sync data and commit.
   */
  private async metadataMessage(dev: number | undefined, fn: () => void): Promise<void> {
    this.assertOpenForWrite();
    const devRelease = dev === undefined ? undefined : await this.devGate(dev).acquireExclusive();
    try {
      const release = await this.poolGate.acquireExclusive();
      try {
        await this.data.sync();
        this.metadataOp(fn);
        this.metadataOp(() => this.md.commit());
      } finally {
        release();
      }
    } finally {
      devRelease?.();
    }
    this.onSpaceAvailable();
  }

  /**
   * The data block of each piece's chunk, or -1 where unmapped. Pieces are consecutive
   * chunks, so a multi-chunk request walks the mapping tree once instead of descending
   * it per chunk (call with the chunks locked; nothing mutates the tree meanwhile).
   */
  private mappedBlocks(id: number, pieces: Array<{ vblock: number }>): number[] {
    if (pieces.length <= 1) return pieces.map((p) => this.md.lookup(id, p.vblock)?.block ?? -1);
    const first = pieces[0].vblock;
    const out = new Array<number>(pieces.length).fill(-1);
    for (const [vblock, m] of this.md.mappings(id, first, first + pieces.length)) out[vblock - first] = m.block;
    return out;
  }

  private async run<T>(gate: Promise<Release>, locks: Promise<Release>[], body: () => Promise<T>): Promise<T> {
    const release = await gate;
    try {
      return await body();
    } catch (e) {
      // Let every queued chunk lock of this request pass so later requests proceed.
      for (const l of locks) l.then((u) => u(), () => undefined);
      throw e;
    } finally {
      release();
    }
  }

  private pieces(id: number, offset: number, length: number): Array<{ vblock: number; off: number; len: number; at: number }> {
    const size = this.deviceSize(id);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new ThinError('E_INVALID', `offset ${offset} and length ${length} must be whole numbers of bytes >= 0`);
    }
    if (offset + length > size) {
      throw new ThinError('E_INVALID', `range ${offset}+${length} is beyond the end of thin device ${id} (${size} bytes)`, { device: id });
    }
    const cb = this.chunkBytes;
    const out = [];
    for (let pos = offset; pos < offset + length;) {
      const vblock = Math.floor(pos / cb);
      const off = pos - vblock * cb;
      const len = Math.min(cb - off, offset + length - pos);
      out.push({ vblock, off, len, at: pos - offset });
      pos += len;
    }
    return out;
  }

  private devGate(id: number): Gate {
    this.requireDevice(id);
    let g = this.devGates.get(id);
    if (!g) { g = new Gate(); this.devGates.set(id, g); }
    return g;
  }

  private requireDevice(id: number): void {
    if (!this.md.hasDevice(id)) throw new ThinError('E_NO_DEVICE', `thin device ${id} does not exist in pool ${this.dir}`, { device: id });
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size <= 0 || size % SECTOR_SIZE !== 0) {
      throw new ThinError('E_INVALID', `thin device size must be a positive multiple of 512 bytes, got ${size}`, { value: size });
    }
  }

  private saveTable(): void {
    saveTable(this.dir, this.table);
  }

  private assertOpenForWrite(): void {
    if (this.closed) throw new ThinError('E_INVALID', `pool ${this.dir} is closed`);
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `pool ${this.dir} is open read-only`);
    if (this.health === 'ro') throw new ThinError('E_READ_ONLY', `pool ${this.dir} is read-only (needs_check is set); run "thinsim check" and repair`);
  }

  private assertWritable(): void {
    this.assertOpenForWrite();
  }
}

/** Data-path calls report every failure through their promise, never by throwing. */
function rejectOnThrow<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

function key(id: number, vblock: number): string {
  return `${id}:${vblock}`;
}

function fileSize(p: string): number {
  const st = fs.statSync(p);
  return st.isBlockDevice() ? blockDeviceSize(p) : st.size;
}

/** Create (or check) a data/metadata file: sparse for loop-lvm, preallocated for direct-lvm. */
function prepareFile(p: string, size: number | undefined, mode: PoolMode, what: string): void {
  const exists = fs.existsSync(p);
  if (exists && fs.statSync(p).isBlockDevice()) return;
  try {
    if (!exists) {
      if (size === undefined) throw new ThinError('E_INVALID', `${what} device ${p} does not exist; give its size`, { file: p });
      fs.writeFileSync(p, '');
    }
    if (size !== undefined && fs.statSync(p).size < size) {
      if (mode === 'direct-lvm') {
        const fd = fs.openSync(p, 'r+');
        try {
          // Preallocate: direct-lvm means no sparse surprises at write time.
          const from = fs.fstatSync(fd).size;
          fs.ftruncateSync(fd, size);
          hot.zeroRange(fd, from, size - from, false);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } else {
        fs.truncateSync(p, size);
      }
    }
  } catch (e) {
    if (e instanceof ThinError) throw e;
    throw ioError(`create ${what} device`, p, e);
  }
}

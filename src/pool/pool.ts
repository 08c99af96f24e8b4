/**
 * The pool engine: the kernel's dm-thin target in userspace. This is the interface
 * file of the pool layer.
 *
 * Contract:
 * - A Pool is a table (pool.json), a data device and a metadata device. One process
 *   opens it read-write at a time (PoolLock); read-only opens see the committed state.
 * - Data path (read/write/discard) takes byte offsets and lengths of any alignment and
 *   is asynchronous; any number of requests may be in flight (data-path.ts says how
 *   they are ordered, provisioned and shared). Every failure rejects the request's
 *   promise; close() waits for every request already issued.
 * - Messages (create_thin, create_snap, delete, ...) and resize: messages.ts.
 * - Status in the kernel's and Docker's terms: status.ts, status-format.ts.
 * - `flush()` makes every completed write durable: data device sync, then metadata
 *   commit (superblock last), or fails. The pool also commits about once a second; a
 *   failure there moves the pool's health as any other does.
 * - Health (`mode`): dm-thin's pool modes, rw, out_of_data_space, ro and fail (state.ts
 *   says when each is entered; docs/reliability.md next to the kernel's rules). After a
 *   failed sync or metadata operation the pool is `ro` with needs_check set on disk, and
 *   no later flush or commit succeeds while it stays open.
 * - A commit waits for in-flight provisioning (allocated but not yet mapped) to
 *   finish, so it never captures a leaked or unwritten block, and does not block
 *   the event loop while it writes (state.ts).
 * - Out of data space: ENOSPC at once with error_if_no_space, otherwise writes wait
 *   up to no_space_timeout for a resize. Out of metadata space: the pool turns
 *   read-only with needs_check set; nothing committed is lost.
 * - Events: 'low-water-mark' (once per crossing), 'mode' (the new mode and, for ro and
 *   fail, why), 'commit', 'passdown-error' (punching freed blocks out of the data
 *   device failed after their unmap committed; PassdownError). 'error' is never emitted; failures reject the request that
 *   caused them (a periodic commit's failure shows in `mode` and `status()`).
 * - Open refuses a data device shorter than the metadata's nr_data_blocks (as the kernel
 *   refuses such a table); create refuses a data size below one data block.
 */
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { sweepInterrupted } from '../durable';
import { ThinError } from '../errors';
import { DataDevice } from '../io/data-device';
import type { BlockDevice } from '../io/block-device';
import type { Bytes } from '../io/byte-list';

export type { Bytes } from '../io/byte-list';
import { FileDevice } from '../io/file-device';
import { checkMetadata, CheckReport } from '../thin/check';
import { deltaRanges } from '../thin/device-delta';
import { lsDevices } from '../thin/device-usage';
import type { DiffRange } from '../thin/report/delta-format';
import { ThinMetadata } from '../thin/metadata';
import type { LsDevice } from '../thin/report/ls-format';
import { checkDataBlockSize, SECTOR_SIZE } from '../units';
import { fileSize, prepareFile } from './backing-files';
import { BlockStatusRun, DataPath } from './data-path';
import { PoolMessages } from './messages';
import { PoolLock } from './pool-lock';
import { PoolHealth, PoolState } from './state';
import { poolStatus, PoolStatus, thinStatus, ThinStatus } from './status';
import { defaultFeatures, DiscardMode, loadTable, PoolMode, refuseLinkedMembers, requireThinSizes, PoolTable, resolveDev, saveTable, TABLE_FILE } from './table';

export type { PoolHealth, PoolStatus, ThinStatus, BlockStatusRun, DiffRange };

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
  /**
   * Use these devices instead of opening the files the table names (tests: in-memory
   * devices with injected faults). The pool closes them.
   */
  devices?: { metadata?: BlockDevice; data?: BlockDevice };
  /**
   * Let the data path do page-cache I/O on the calling thread when that needs no wait
   * (loop-lvm; see DataDevice). Default true. false sends every read and write through
   * the thread pool, which is always correct, only slower.
   */
  inlineIo?: boolean;
}

/** Docker's defaults for loop-lvm. */
export const DEFAULT_DATA_SIZE = 100 * 2 ** 30;
export const DEFAULT_METADATA_SIZE = 2 * 2 ** 30;
export const DEFAULT_BLOCK_SECTORS = 128;

export class Pool extends EventEmitter {
  readonly dir: string;
  readonly table: PoolTable;
  readonly readOnly: boolean;
  readonly chunkBytes: number;
  private readonly state: PoolState;
  private readonly dataPath: DataPath;
  private readonly messages: PoolMessages;
  private readonly lock: PoolLock | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** The periodic commit in progress, if any (one at a time). */
  private periodicCommit: Promise<void> | undefined;

  private constructor(dir: string, table: PoolTable, md: ThinMetadata, data: DataDevice, lock: PoolLock | undefined, opts: OpenOptions & { metadataFile: string }) {
    super();
    // Every NBD server on the pool listens for 'mode' (one per export or attachment:
    // a snapshotter may hold hundreds), so no listener count means a leak here.
    this.setMaxListeners(0);
    this.dir = dir;
    this.table = table;
    this.lock = lock;
    this.readOnly = !!opts.readOnly || table.features.readOnly;
    this.state = new PoolState(dir, table, md, data, this, opts.noSpaceTimeoutMs ?? table.noSpaceTimeout * 1000, this.readOnly, opts.metadataFile);
    this.chunkBytes = this.state.chunkBytes;
    this.dataPath = new DataPath(this.state);
    this.messages = new PoolMessages(this.state);
    this.reconcileTable();
    const every = opts.commitInterval ?? 1000;
    if (!this.readOnly && every > 0) {
      this.timer = setInterval(() => {
        if (md.dirty && !this.state.poolGate.busy && !this.periodicCommit) {
          this.periodicCommit = this.state.commit({ presync: true, periodic: true }).then(
            () => { this.periodicCommit = undefined; },
            () => {
              // Not dropped: the failure already moved the pool's health (state.ts: `ro` with
              // needs_check, or `fail`, with the error as the reason), which every later
              // request, flush and status() reports. No request is waiting for this one.
              this.periodicCommit = undefined;
            },
          );
        }
      }, every);
      this.timer.unref();
    }
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Create a pool directory. Sparse files for loop-lvm; preallocated files (or the
   * given block devices) for direct-lvm. A metadata device that already holds a
   * dm-thin superblock is adopted, as the kernel does; only an all-zero one is
   * formatted. A directory it makes is 0700 and the files it makes (data, metadata,
   * pool.json) are 0600.
   */
  static create(dir: string, opts: CreateOptions = {}): Pool {
    const mode = opts.mode ?? 'loop-lvm';
    const blockSize = checkDataBlockSize(opts.blockSize ?? DEFAULT_BLOCK_SECTORS);
    if (fs.existsSync(path.join(dir, TABLE_FILE))) {
      throw new ThinError('E_DEVICE_EXISTS', `${dir} already holds a pool (${TABLE_FILE}); open it, or remove the directory first`, { file: dir });
    }
    const chunk = blockSize * SECTOR_SIZE;
    if (opts.dataSize !== undefined && !(opts.dataSize >= chunk)) {
      throw new ThinError('E_INVALID', `data size ${opts.dataSize} bytes is less than one data block (${chunk} bytes, the block size); a pool needs at least one: pass a data size of ${chunk} bytes or more`, { value: opts.dataSize, minimum: chunk });
    }
    makePrivateDir(dir);
    refuseLinkedMembers(dir); // a planted link (data -> /etc/x) would have prepareFile grow its target
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
    const nrDataBlocks = Math.floor(fileSize(dataPath) / chunk);
    if (nrDataBlocks < 1) {
      throw new ThinError('E_INVALID', `data device ${dataPath} is ${fileSize(dataPath)} bytes, less than one data block (${chunk} bytes); a pool needs at least one: use a device of ${chunk} bytes or more`, { file: dataPath, minimum: chunk });
    }
    const metaDev = new FileDevice(metaPath);
    try {
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
      if (lock) sweepInterrupted(dir); // pool.json's temporary file, when a writer was killed mid-write
      const metadataFile = resolveDev(dir, table.metadataDev);
      const metaDev = opts.devices?.metadata ?? new FileDevice(metadataFile, { readOnly });
      let md: ThinMetadata;
      try {
        md = ThinMetadata.open(metaDev, { cacheBlocks: opts.cacheBlocks });
        requireThinSizes(dir, table, md.devices());
      } catch (e) {
        metaDev.close();
        throw e;
      }
      let data: DataDevice;
      try {
        data = new DataDevice(opts.devices?.data ?? resolveDev(dir, table.dataDev), { direct: table.mode === 'direct-lvm', readOnly, inline: opts.inlineIo ?? true });
      } catch (e) {
        md.close();
        throw e;
      }
      try {
        checkDataDeviceSize(data, md, metadataFile);
        return new Pool(dir, table, md, data, lock, { ...opts, readOnly: readOnly || table.features.readOnly, metadataFile });
      } catch (e) {
        data.close();
        md.close();
        throw e;
      }
    } catch (e) {
      lock?.release();
      throw e;
    }
  }

  /** Commit (when writable) and release everything. */
  async close(): Promise<void> {
    const s = this.state;
    if (s.closed || this.closing) return;
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    // Writes queued for space cannot get any once closing (no resize can come): fail them
    // now rather than after no_space_timeout. Nothing they wrote was acknowledged.
    s.failWaiters(new ThinError('E_CLOSED', `pool ${this.dir} is closing; a write waiting for data space was not done`));
    // Every request already issued finishes (or fails) before the files close.
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    if (this.periodicCommit) await this.periodicCommit;
    try {
      // A pool that is `ro` or `fail` cannot commit (its failure, or needs_check, is on
      // disk already); everything else commits what its requests did.
      if (s.canChangeMetadata) await s.commit();
    } finally {
      s.closed = true;
      s.failWaiters(new ThinError('E_CLOSED', `pool ${this.dir} is closed`));
      s.md.close();
      s.data.close();
      this.lock?.release();
    }
  }

  /** Drop table entries for devices the metadata does not have (a crash between the two writes). */
  private reconcileTable(): void {
    const stale = Object.keys(this.table.thins).filter((k) => !this.state.md.hasDevice(Number(k)));
    if (stale.length === 0) return;
    for (const k of stale) delete this.table.thins[k];
    if (!this.readOnly) this.state.saveTable();
  }

  get mode(): PoolHealth {
    return this.state.mode;
  }

  /** Why the pool is `ro` or `fail` (the failure, or needs_check found at open); undefined when healthy. */
  get modeReason(): string | undefined {
    return this.state.modeReason;
  }

  /** The data device (for reports: direct I/O, block device or file). */
  get data(): DataDevice {
    return this.state.data;
  }

  // ------------------------------------------------------------------ devices and messages

  devices(): number[] {
    return this.state.md.devices();
  }

  hasDevice(id: number): boolean {
    return this.state.md.hasDevice(id);
  }

  /** A thin device's size in bytes (from the table; defaults to the data device size). */
  deviceSize(id: number): number {
    return this.state.deviceSize(id);
  }

  createThin(id: number, size: number): Promise<void> {
    return this.messages.createThin(id, size);
  }

  createSnap(id: number, origin: number, size?: number): Promise<void> {
    return this.messages.createSnap(id, origin, size);
  }

  async deleteDevice(id: number): Promise<void> {
    return this.messages.deleteDevice(id);
  }

  setTransactionId(current: number, next: number): Promise<void> {
    return this.messages.setTransactionId(current, next);
  }

  reserveMetadataSnap(): Promise<number> {
    return this.messages.reserveMetadataSnap();
  }

  releaseMetadataSnap(): Promise<void> {
    return this.messages.releaseMetadataSnap();
  }

  /** The dm-thin pool messages, as `dmsetup message <pool> 0 ...` takes them. */
  message(words: string[]): Promise<void> {
    return this.messages.message(words);
  }

  /** Grow the data and/or metadata device (never shrink). Wakes writes waiting for space. */
  resize(opts: { dataSize?: number; metadataSize?: number }): Promise<void> {
    return this.messages.resize(opts);
  }

  // ------------------------------------------------------------------ data path

  /** Read `length` bytes at `offset` of thin device `id`; unmapped ranges read as zeros. */
  read(id: number, offset: number, length: number): Promise<Buffer> {
    return this.request(() => this.dataPath.read(id, offset, length));
  }

  /** Write `data` at `offset` of thin device `id`: one buffer, or several written back to back. */
  write(id: number, offset: number, data: Bytes): Promise<void> {
    return this.request(() => this.dataPath.write(id, offset, data));
  }

  /** Unmap whole chunks (punching them under passdown) and zero the partial ones at either end. */
  discard(id: number, offset: number, length: number): Promise<void> {
    return this.request(() => this.dataPath.discard(id, offset, length));
  }

  /** Where chunk `vblock` of thin device `id` lives on the data device, and when it was mapped; undefined if unmapped. */
  lookup(id: number, vblock: number): { block: number; time: number } | undefined {
    this.state.requireDevice(id);
    const m = this.state.md.lookup(id, vblock);
    return m && { block: m.block, time: m.time };
  }

  /** Provisioned and unprovisioned runs of a byte range (NBD's base:allocation). */
  blockStatus(id: number, offset: number, length: number): BlockStatusRun[] {
    return this.dataPath.blockStatus(id, offset, length);
  }

  /** Make every completed write durable: sync data, then commit metadata. */
  flush(): Promise<void> {
    return this.commit();
  }

  /**
   * Commit: wait for in-flight provisioning, sync the data device, commit metadata.
   * Counted as a request: close() waits for it, and refuses one issued once closing.
   */
  commit(): Promise<void> {
    return this.request(() => this.state.commit());
  }

  // ------------------------------------------------------------------ status

  status(): PoolStatus {
    return poolStatus(this.state);
  }

  thinStatus(id: number): ThinStatus {
    return thinStatus(this.state, id);
  }

  /** thin_ls's numbers for every device (mapped, exclusive, shared blocks; times). */
  sharing(): LsDevice[] {
    return lsDevices(this.state.md);
  }

  /**
   * How two thin devices differ, as thin_delta reports it: ranges of virtual blocks
   * (in chunks) that only one side maps, that both map to different data blocks, or
   * to the same ones. What a layer diff is made of.
   */
  delta(a: number, b: number): DiffRange[] {
    return deltaRanges(this.state.md, a, b);
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

  /** Start a data-path request: refused once closing; tracked so close() can wait for it. */
  private request<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing || this.state.closed) return Promise.reject(new ThinError('E_CLOSED', `pool ${this.dir} is closing; the request was not started`));
    const p = rejectOnThrow(fn);
    this.inflight.add(p);
    const done = () => { this.inflight.delete(p); };
    p.then(done, done);
    return p;
  }
}

/**
 * As the kernel refuses a pool table whose data device is smaller than the metadata's
 * data space map ("pool target too small"): mappings past the end would read back as
 * zeros, and new blocks would be handed out there.
 */
function checkDataDeviceSize(data: DataDevice, md: ThinMetadata, metadataFile: string): void {
  const chunk = md.dataBlockSize * SECTOR_SIZE;
  const need = md.nrDataBlocks * chunk;
  const have = data.size();
  if (have >= need) return;
  throw new ThinError('E_TOO_SMALL',
    `data device ${data.path} is ${have} bytes, but the metadata on ${metadataFile} describes ${md.nrDataBlocks} data blocks of ${chunk} bytes (${need} bytes): ` +
    `was the data file truncated? The pool is not opened. Give the data device back its ${need} bytes (a file cut short has lost the blocks past its end), then run "thin_check ${metadataFile}"`,
    { file: data.path, size: have, expected: need });
}

/**
 * The one place a data-path call's synchronous throw (a bad range, a read-only or failed
 * pool, an inline I/O error: DataPath throws those before queueing anything) becomes a
 * rejection: Pool's data-path methods report every failure through their promise.
 */
function rejectOnThrow<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Make `dir` (mode 0700, its parents as usual); an existing directory keeps its mode. */
function makePrivateDir(dir: string): void {
  fs.mkdirSync(path.dirname(path.resolve(dir)), { recursive: true });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

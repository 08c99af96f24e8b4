/**
 * dm-thin's pool messages (`dmsetup message <pool> 0 ...`) and resize.
 *
 * Contract:
 * - Each message quiesces the device it touches (as the kernel requires the origin
 *   suspended for a snapshot), syncs the data device, applies the change and
 *   commits; it returns once the change is durable.
 * - A thin device's size lives in pool.json (the kernel keeps it in the thin
 *   target's table). It is written before the device is committed to metadata, so
 *   a crash in between leaves an entry without a device, which open drops; never a
 *   device without its size.
 * - Misuse (an existing or missing id, a wrong transaction id, a shrink) throws a
 *   ThinError and changes nothing.
 * - In `ro` and `fail` mode every message and resize is refused (the kernel: "unable to
 *   service pool target messages in READ_ONLY or FAIL mode"); a failure while one runs
 *   moves the pool's health (state.ts).
 */
import { ThinError } from '../errors';
import { SECTOR_SIZE } from '../units';
import type { PoolState } from './state';

export class PoolMessages {
  constructor(private readonly s: PoolState) {}

  async createThin(id: number, size: number): Promise<void> {
    checkSize(size);
    await this.withTableEntry(id, size, () => this.apply(undefined, 'create_thin', () => this.s.md.createThin(id)));
  }

  async createSnap(id: number, origin: number, size?: number): Promise<void> {
    const originSize = this.s.deviceSize(origin);
    if (size !== undefined) checkSize(size);
    await this.withTableEntry(id, size ?? originSize, () => this.apply(origin, 'create_snap', () => this.s.md.createSnap(id, origin)));
  }

  async deleteDevice(id: number): Promise<void> {
    this.s.requireDevice(id);
    await this.apply(id, 'delete', () => this.s.md.deleteDevice(id));
    this.s.forgetDevice(id);
    delete this.s.table.thins[id];
    this.s.saveTable();
  }

  async setTransactionId(current: number, next: number): Promise<void> {
    await this.apply(undefined, 'set_transaction_id', () => this.s.md.setTransactionId(current, next));
  }

  async reserveMetadataSnap(): Promise<number> {
    let at = 0;
    await this.apply(undefined, 'reserve_metadata_snap', () => { at = this.s.md.reserveMetadataSnap(); });
    return at;
  }

  async releaseMetadataSnap(): Promise<void> {
    await this.apply(undefined, 'release_metadata_snap', () => this.s.md.releaseMetadataSnap());
  }

  /** The dm-thin pool messages, as `dmsetup message <pool> 0 ...` takes them. */
  async message(words: string[]): Promise<void> {
    const [verb, ...args] = words;
    const num = (w: string | undefined, what: string) => {
      if (w === undefined || !/^\d+$/.test(w)) throw new ThinError('E_INVALID', `${verb}: ${what} must be a whole number, got ${w ?? 'nothing'}`);
      return Number(w);
    };
    const arity = (n: number, usage: string) => {
      if (args.length !== n) throw new ThinError('E_INVALID', `usage: ${usage}`);
    };
    switch (verb) {
      case 'create_thin': arity(1, 'create_thin <dev_id>'); return this.createThin(num(args[0], 'dev_id'), this.s.md.nrDataBlocks * this.s.chunkBytes);
      case 'create_snap': arity(2, 'create_snap <dev_id> <origin_id>'); return this.createSnap(num(args[0], 'dev_id'), num(args[1], 'origin_id'));
      case 'delete': arity(1, 'delete <dev_id>'); return this.deleteDevice(num(args[0], 'dev_id'));
      case 'set_transaction_id': arity(2, 'set_transaction_id <current_id> <new_id>'); return this.setTransactionId(num(args[0], 'current_id'), num(args[1], 'new_id'));
      case 'reserve_metadata_snap': arity(0, 'reserve_metadata_snap'); await this.reserveMetadataSnap(); return;
      case 'release_metadata_snap': arity(0, 'release_metadata_snap'); return this.releaseMetadataSnap();
      default:
        throw new ThinError('E_INVALID', `unknown pool message "${verb ?? ''}"; use create_thin, create_snap, delete, set_transaction_id, reserve_metadata_snap or release_metadata_snap`);
    }
  }

  /** Grow the data and/or metadata device (never shrink). Wakes writes waiting for space. */
  async resize(opts: { dataSize?: number; metadataSize?: number }): Promise<void> {
    const { md, data, chunkBytes } = this.s;
    this.s.assertCanChangeMetadata();
    const blocks = opts.dataSize === undefined ? undefined : Math.floor(opts.dataSize / chunkBytes);
    if (blocks !== undefined && blocks < md.nrDataBlocks) {
      throw new ThinError('E_UNSUPPORTED', `cannot shrink the data device from ${md.nrDataBlocks * chunkBytes} to ${opts.dataSize} bytes; dm-thin pools only grow`, { from: md.nrDataBlocks, to: blocks });
    }
    // The data file grows first (a grown file with the old metadata is still a valid pool).
    if (blocks !== undefined) data.grow(blocks * chunkBytes);
    await this.apply(undefined, 'resize', () => {
      if (blocks !== undefined) md.growData(blocks);
      if (opts.metadataSize !== undefined) md.growMetadata(opts.metadataSize);
      this.s.rearmLowWater();
    });
  }

  private async withTableEntry(id: number, size: number, create: () => Promise<void>): Promise<void> {
    this.s.assertCanChangeMetadata();
    if (this.s.md.hasDevice(id)) throw new ThinError('E_DEVICE_EXISTS', `thin device ${id} already exists`, { device: id });
    const table = this.s.table;
    const before = table.thins[id];
    table.thins[id] = { size };
    this.s.saveTable();
    try {
      await create();
    } catch (e) {
      if (before) table.thins[id] = before; else delete table.thins[id];
      this.s.saveTable();
      throw e;
    }
  }

  /** Quiesce `id` (when given) and the pool, sync data, run `fn` (the message `op`), commit. */
  private async apply(id: number | undefined, op: string, fn: () => void): Promise<void> {
    this.s.assertCanChangeMetadata();
    const devRelease = id === undefined ? undefined : await this.s.devGate(id).acquireExclusive();
    try {
      const release = await this.s.poolGate.acquireExclusive();
      try {
        this.s.assertCanChangeMetadata(); // the pool may have failed while this waited
        await this.s.syncData();
        this.s.metadataOp(op, fn);
        await this.s.commitMetadata();
      } finally {
        release();
      }
    } finally {
      devRelease?.();
    }
    this.s.onSpaceAvailable();
  }
}

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % SECTOR_SIZE !== 0) {
    throw new ThinError('E_INVALID', `thin device size must be a positive multiple of 512 bytes, got ${size}`, { value: size });
  }
}

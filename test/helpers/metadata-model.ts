/**
 * An in-memory model of what dm-thin pool metadata must hold (spec §5.2, §7.2, §8), for the
 * thin-layer suites: the random driver in workload.ts applies every operation to a ThinMetadata
 * and to this model, and metadata-checks.ts compares the two. (thin-model.ts models a thin_dump
 * document, DumpModel; pool-model.ts models device content, bytes.)
 *
 * The model is deliberately naive: per device a Map vblock -> {block, time} plus the details
 * record, the pool time and transaction id, the committed copy (abort/reopen roll back to it)
 * and the copy held by a metadata snapshot. It never looks at the code under test: expected
 * values come from the kernel's rules only.
 *
 *  - create_thin: mapped 0, transaction = pool trans_id, creation = snapshotted = pool time;
 *  - create_snap: pool time + 1 first; the snapshot copies the origin's mappings and gets
 *    mapped = origin's, transaction = trans_id, creation = snapshotted = new time; the origin's
 *    snapshotted_time becomes the new time;
 *  - a mapping made by insert carries the pool time at the moment of the insert;
 *  - data blocks handed out by allocateDataBlock are referenced by nothing: not by any live
 *    device, not by the held metadata snapshot, and not by the last committed state (the
 *    kernel's old_ll rule: a block freed in this transaction is not reused before the commit).
 */

import type { DeviceInfo, SuperblockInfo } from '../../src/thin/xml/types';
import type { DumpDevice, DumpModel } from './thin-model';

export interface BT {
  block: number;
  time: number;
}

export interface ModelDetails {
  transactionId: number;
  creationTime: number;
  snapshottedTime: number;
}

/** One thin device as the metadata holds it: its mapping tree and its details record. */
export interface DeviceState {
  map: Map<number, BT>;
  details: ModelDetails;
}

/** What one superblock (live or a metadata-snapshot copy) describes. */
export interface PoolState {
  time: number;
  transactionId: number;
  nrDataBlocks: number;
  devices: Map<number, DeviceState>;
}

export function cloneState(s: PoolState): PoolState {
  const devices = new Map<number, DeviceState>();
  for (const [id, d] of s.devices) devices.set(id, { map: new Map(d.map), details: { ...d.details } });
  return { time: s.time, transactionId: s.transactionId, nrDataBlocks: s.nrDataBlocks, devices };
}

/** Data blocks mapped anywhere in `s`. */
export function referencedBlocks(s: PoolState | undefined, into = new Set<number>()): Set<number> {
  if (s) for (const d of s.devices.values()) for (const m of d.map.values()) into.add(m.block);
  return into;
}

export class PoolModel {
  live: PoolState;
  committed: PoolState;
  /** State copied by the metadata snapshot (as of the reserve), in the live transaction. */
  held: PoolState | undefined;
  /** `held` as of the last commit. */
  committedHeld: PoolState | undefined;
  readonly dataBlockSize: number;
  /** Live references per data block (mappings in live devices). */
  private liveRefs = new Map<number, number>();
  private committedRefs = new Set<number>();
  private heldRefs = new Set<number>();
  /** Allocated in this transaction and not mapped yet. */
  readonly pending = new Set<number>();

  constructor(dataBlockSize: number, nrDataBlocks: number, time = 0, transactionId = 0) {
    this.dataBlockSize = dataBlockSize;
    this.live = { time, transactionId, nrDataBlocks, devices: new Map() };
    this.committed = cloneState(this.live);
  }

  /** A model of an existing pool (e.g. from a thin_dump of kernel metadata). */
  static fromDump(dump: DumpModel): PoolModel {
    const m = new PoolModel(dump.sb.dataBlockSize, dump.sb.nrDataBlocks, dump.sb.time, dump.sb.transaction);
    for (const d of dump.devices) {
      const map = new Map<number, BT>();
      for (const x of d.mappings) map.set(x.origin, { block: x.data, time: x.time });
      m.live.devices.set(d.info.devId, {
        map,
        details: { transactionId: d.info.transaction, creationTime: d.info.creationTime, snapshottedTime: d.info.snapTime },
      });
    }
    m.recount();
    m.commit();
    return m;
  }

  get time(): number { return this.live.time; }
  get transactionId(): number { return this.live.transactionId; }
  get nrDataBlocks(): number { return this.live.nrDataBlocks; }
  get devices(): Map<number, DeviceState> { return this.live.devices; }

  deviceIds(): number[] {
    return [...this.live.devices.keys()].sort((a, b) => a - b);
  }

  dev(id: number): DeviceState {
    const d = this.live.devices.get(id);
    if (!d) throw new Error(`model: no device ${id}`);
    return d;
  }

  private ref(b: number, delta: number): void {
    const c = (this.liveRefs.get(b) ?? 0) + delta;
    if (c < 0) throw new Error(`model: data block ${b} count below zero`);
    if (c === 0) this.liveRefs.delete(b);
    else this.liveRefs.set(b, c);
  }

  /** Is `b` referenced by anything the pool must keep (a freshly allocated block must not be)? */
  busy(b: number): boolean {
    return this.liveRefs.has(b) || this.committedRefs.has(b) || this.heldRefs.has(b) || this.pending.has(b);
  }

  /** Is `b` mapped by a live device or by the held metadata snapshot (count > 0 expected)? */
  referenced(b: number): boolean {
    return this.liveRefs.has(b) || this.heldRefs.has(b) || this.pending.has(b);
  }

  createThin(id: number): void {
    if (this.live.devices.has(id)) throw new Error(`model: device ${id} exists`);
    const t = this.live.time;
    this.live.devices.set(id, { map: new Map(), details: { transactionId: this.live.transactionId, creationTime: t, snapshottedTime: t } });
  }

  createSnap(id: number, origin: number): void {
    const o = this.dev(origin);
    if (this.live.devices.has(id)) throw new Error(`model: device ${id} exists`);
    this.live.time++;
    const t = this.live.time;
    o.details = { ...o.details, snapshottedTime: t };
    this.live.devices.set(id, { map: new Map(o.map), details: { transactionId: this.live.transactionId, creationTime: t, snapshottedTime: t } });
    for (const m of o.map.values()) this.ref(m.block, 1);
  }

  deleteDevice(id: number): void {
    const d = this.dev(id);
    for (const m of d.map.values()) this.ref(m.block, -1);
    this.live.devices.delete(id);
  }

  /** Map `v` of `id` to a block the caller allocated (pending until mapped). */
  insert(id: number, v: number, block: number): void {
    const d = this.dev(id);
    const old = d.map.get(v);
    if (old) this.ref(old.block, -1);
    d.map.set(v, { block, time: this.live.time });
    this.pending.delete(block);
    this.ref(block, 1);
  }

  remove(id: number, v: number): BT | undefined {
    const d = this.dev(id);
    const old = d.map.get(v);
    if (old) {
      d.map.delete(v);
      this.ref(old.block, -1);
    }
    return old;
  }

  removeRange(id: number, from: number, to: number): number {
    const d = this.dev(id);
    let n = 0;
    for (const [v, m] of [...d.map]) {
      if (v >= from && v < to) {
        d.map.delete(v);
        this.ref(m.block, -1);
        n++;
      }
    }
    return n;
  }

  setTransactionId(next: number): void {
    this.live.transactionId = next;
  }

  /** reserve_metadata_snap commits, then holds the committed state. */
  reserveMetadataSnap(): void {
    this.commit();
    this.held = cloneState(this.live);
    this.heldRefs = referencedBlocks(this.held);
    this.commit();
  }

  releaseMetadataSnap(): void {
    this.held = undefined;
    this.heldRefs = new Set();
  }

  resizeData(n: number): void {
    this.live.nrDataBlocks = n;
  }

  commit(): void {
    if (this.pending.size) throw new Error(`model: committing with ${this.pending.size} allocated but unmapped data blocks (a leak)`);
    this.committed = cloneState(this.live);
    this.committedHeld = this.held ? cloneState(this.held) : undefined;
    this.committedRefs = referencedBlocks(this.committed, referencedBlocks(this.committedHeld));
  }

  /** abort(), or a reopen without commit: back to the last commit. */
  rollback(): void {
    this.live = cloneState(this.committed);
    this.held = this.committedHeld ? cloneState(this.committedHeld) : undefined;
    this.pending.clear();
    this.liveRefs.clear();
    for (const d of this.live.devices.values()) for (const m of d.map.values()) this.ref(m.block, 1);
    this.heldRefs = referencedBlocks(this.held);
  }

  /** Recompute live reference counts (after fromDump or bulk edits). */
  recount(): void {
    this.liveRefs.clear();
    for (const d of this.live.devices.values()) for (const m of d.map.values()) this.ref(m.block, 1);
  }

  /** The content thin_dump must print for `state` (sorted single mappings). */
  static expectedDump(state: PoolState, sb: { flags?: number; version?: number; dataBlockSize: number; nrDataBlocks?: number }): DumpModel {
    const info: SuperblockInfo = {
      uuid: '',
      time: state.time,
      transaction: state.transactionId,
      flags: sb.flags ?? 0,
      version: sb.version ?? 2,
      dataBlockSize: sb.dataBlockSize,
      nrDataBlocks: sb.nrDataBlocks ?? state.nrDataBlocks,
    };
    const devices: DumpDevice[] = [...state.devices.keys()].sort((a, b) => a - b).map((id) => {
      const d = state.devices.get(id)!;
      const di: DeviceInfo = {
        devId: id,
        mappedBlocks: d.map.size,
        transaction: d.details.transactionId,
        creationTime: d.details.creationTime,
        snapTime: d.details.snapshottedTime,
      };
      const mappings = [...d.map].sort((a, b) => a[0] - b[0]).map(([origin, m]) => ({ origin, data: m.block, time: m.time }));
      return { info: di, mappings };
    });
    return { sb: info, devices };
  }
}

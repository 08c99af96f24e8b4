/**
 * Random pool workloads for the thin-layer suites: an in-memory model of what dm-thin pool
 * metadata must hold (spec §5.2, §7.2, §8), and a driver that applies the same random
 * operations to a ThinMetadata and to the model. (thin-model.ts models a thin_dump document,
 * DumpModel; pool-model.ts models device content, bytes.)
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
 *
 * Every step is appended to `log`, so a failing test can print the seed and the last steps.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Rand } from '../../support/random';
import { repoRoot } from './oracle';
import { isThinError, type ThinErrorCode } from '../../src/errors';
import type { ThinMetadata } from '../../src/thin/metadata';
import type { DeviceInfo, SuperblockInfo } from '../../src/thin/xml/types';
import type { DumpDevice, DumpModel } from './thin-model';

// ------------------------------------------------------------------------------ the model

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

// ------------------------------------------------------------------------------ checks

/** Require that `md` (live view) holds exactly `state`. */
export function assertMetadataMatches(md: ThinMetadata, state: PoolState, where: string, r?: Rand): void {
  assert.deepEqual(md.devices(), [...state.devices.keys()].sort((a, b) => a - b), `${where}: device ids`);
  assert.equal(md.time, state.time, `${where}: pool time`);
  assert.equal(md.transactionId, state.transactionId, `${where}: transaction id`);
  for (const [id, d] of state.devices) {
    const det = md.deviceDetails(id);
    assert.deepEqual(
      { mappedBlocks: det.mappedBlocks, transactionId: det.transactionId, creationTime: det.creationTime, snapshottedTime: det.snapshottedTime },
      { mappedBlocks: d.map.size, ...d.details },
      `${where}: details of device ${id}`,
    );
    const got = [...md.mappings(id)].map(([v, m]) => [v, m.block, m.time]);
    const want = [...d.map].sort((a, b) => a[0] - b[0]).map(([v, m]) => [v, m.block, m.time]);
    if (got.length !== want.length || got.some((g, i) => g[0] !== want[i][0] || g[1] !== want[i][1] || g[2] !== want[i][2])) {
      assert.deepEqual(firstDiff(got, want), undefined, `${where}: mappings of device ${id} (${got.length} vs model ${want.length})`);
    }
    // Point lookups: mapped keys, neighbours and far keys.
    const keys = [...d.map.keys()];
    const probes: number[] = [];
    for (let i = 0; i < 24 && keys.length; i++) {
      const k = r ? keys[r.int(keys.length)] : keys[(i * 7919) % keys.length];
      probes.push(k, k + 1, Math.max(0, k - 1));
    }
    probes.push(0, 2 ** 40, r ? r.int(100000) : 12345);
    for (const v of probes) {
      const m = md.lookup(id, v);
      const want1 = d.map.get(v);
      assert.deepEqual(m ? { block: m.block, time: m.time } : undefined, want1, `${where}: lookup(${id}, ${v})`);
    }
  }
}

function firstDiff(got: number[][], want: number[][]): unknown {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    if (!g || !w || g[0] !== w[0] || g[1] !== w[1] || g[2] !== w[2]) return { index: i, got: g, model: w };
  }
  return undefined;
}

/** Data space map: count > 0 exactly for blocks the model says are referenced. */
export function assertDataCounts(md: ThinMetadata, model: PoolModel, where: string): void {
  const nrBlocks = md.spaceUsage().dataBlocks;
  assert.equal(nrBlocks, model.nrDataBlocks, `${where}: data space map size`);
  let wrong = 0;
  const examples: string[] = [];
  for (let b = 0; b < nrBlocks; b++) {
    const c = md.dataRefCount(b);
    const want = model.referenced(b);
    if ((c > 0) !== want) {
      wrong++;
      if (examples.length < 5) examples.push(`block ${b}: count ${c}, model ${want ? 'referenced' : 'free'}`);
    }
  }
  assert.equal(wrong, 0, `${where}: data counts disagree with the model: ${examples.join('; ')}`);
}

/** Run `fn`, require a ThinError with `code`. */
export function expectThinError(fn: () => unknown, code: ThinErrorCode, what: string): void {
  try {
    fn();
  } catch (e) {
    if (isThinError(e, code)) return;
    throw new Error(`${what}: expected ThinError ${code}, got ${(e as Error)?.stack ?? e}`);
  }
  throw new Error(`${what}: expected ThinError ${code}, but it succeeded`);
}

// ------------------------------------------------------------------------------ the driver

export type Op =
  | 'write' | 'overwrite' | 'remove' | 'removeRange' | 'createThin' | 'createSnap' | 'deleteDevice'
  | 'setTransactionId' | 'metaSnap' | 'commit' | 'abort' | 'reopen' | 'misuse' | 'release' | 'resizeData';

export const DEFAULT_WEIGHTS: Record<Op, number> = {
  write: 30, overwrite: 14, remove: 6, removeRange: 2, createThin: 3, createSnap: 4, deleteDevice: 1.5,
  setTransactionId: 2, metaSnap: 1.5, commit: 5, abort: 1, reopen: 1, misuse: 2, release: 1, resizeData: 0.3,
};

export interface WorkloadOptions {
  weights?: Partial<Record<Op, number>>;
  /** Virtual blocks are drawn from [0, maxVBlock). */
  maxVBlock?: number;
  /** Longest write run. */
  maxRun?: number;
  maxDevices?: number;
  /** Device ids are drawn from [0, idRange) (plus now and then a large id). */
  idRange?: number;
  /** Called after every commit the workload makes (commit op, reserve, release+commit). */
  onCommit?: (w: Workload) => void;
}

export class Workload {
  md: ThinMetadata;
  readonly model: PoolModel;
  readonly r: Rand;
  readonly log: string[] = [];
  commits = 0;
  private readonly opts: Required<Omit<WorkloadOptions, 'onCommit' | 'weights'>> & Pick<WorkloadOptions, 'onCommit'>;
  private readonly weights: Record<Op, number>;
  private readonly reopenFn: (md: ThinMetadata) => ThinMetadata;

  constructor(md: ThinMetadata, model: PoolModel, r: Rand, reopen: (md: ThinMetadata) => ThinMetadata, opts: WorkloadOptions = {}) {
    this.md = md;
    this.model = model;
    this.r = r;
    this.reopenFn = reopen;
    this.weights = { ...DEFAULT_WEIGHTS, ...opts.weights };
    this.opts = {
      maxVBlock: opts.maxVBlock ?? 4000,
      maxRun: opts.maxRun ?? 48,
      maxDevices: opts.maxDevices ?? 8,
      idRange: opts.idRange ?? 40,
      onCommit: opts.onCommit,
    };
  }

  /** The seed and the last steps, for failure messages. */
  trace(n = 25): string {
    return `seed ${this.r.seed} (replay with THINSIM_SEED=${this.r.seed}); last steps:\n  ${this.log.slice(-n).join('\n  ')}`;
  }

  private note(s: string): void {
    this.log.push(s);
    if (this.log.length > 400) this.log.splice(0, 200);
  }

  newId(): number {
    for (;;) {
      const id = this.r.chance(0.1) ? this.r.int(2 ** 24) : this.r.int(this.opts.idRange);
      if (!this.model.devices.has(id)) return id;
    }
  }

  anyDevice(): number | undefined {
    const ids = this.model.deviceIds();
    return ids.length ? this.r.pick(ids) : undefined;
  }

  /** allocateDataBlock, checked against the model's idea of what is free. */
  allocate(): number {
    let b = this.md.allocateDataBlock();
    if (b < 0) {
      // Out of data space: grow (pools only grow) and retry once.
      const n = this.model.nrDataBlocks + 1000;
      this.note(`resizeData(${n}) after ENOSPC`);
      this.md.growData(n);
      this.model.resizeData(n);
      b = this.md.allocateDataBlock();
    }
    assert.ok(b >= 0 && b < this.model.nrDataBlocks, `allocateDataBlock gave ${b} (pool has ${this.model.nrDataBlocks} blocks)`);
    assert.ok(!this.model.busy(b), `allocateDataBlock gave block ${b}, which is still referenced (live, committed or held) or already handed out`);
    this.model.pending.add(b);
    return b;
  }

  write(dev: number, v: number): void {
    const b = this.allocate();
    this.md.insertMapping(dev, v, b);
    this.model.insert(dev, v, b);
  }

  commit(): void {
    this.note('commit()');
    this.md.commit();
    this.model.commit();
    this.commits++;
    this.opts.onCommit?.(this);
  }

  abort(): void {
    this.note('abort()');
    this.md.abort();
    this.model.rollback();
  }

  reopen(): void {
    this.note('reopen (uncommitted changes are lost)');
    this.md = this.reopenFn(this.md);
    this.model.rollback();
  }

  /** One random operation. */
  step(): void {
    const m = this.model;
    const r = this.r;
    const w = { ...this.weights };
    if (m.devices.size === 0) {
      w.createSnap = w.write = w.overwrite = w.remove = w.removeRange = w.deleteDevice = 0;
      w.createThin = Math.max(w.createThin, 1);
    }
    if (m.devices.size >= this.opts.maxDevices) w.createThin = w.createSnap = 0;
    const op = r.weighted<Op>(w);
    switch (op) {
      case 'write': {
        const dev = this.anyDevice()!;
        const len = r.chance(0.3) ? 1 : r.range(1, this.opts.maxRun);
        const start = r.int(this.opts.maxVBlock);
        this.note(`write dev ${dev} [${start}, +${len})`);
        for (let v = start; v < start + len; v++) this.write(dev, v);
        break;
      }
      case 'overwrite': {
        const dev = this.anyDevice()!;
        const keys = [...m.dev(dev).map.keys()];
        if (!keys.length) break;
        const n = r.range(1, 8);
        const start = r.int(keys.length);
        this.note(`overwrite dev ${dev} ${n} mapped blocks from #${start}`);
        for (let i = 0; i < n && start + i < keys.length; i++) this.write(dev, keys[start + i]);
        break;
      }
      case 'remove': {
        const dev = this.anyDevice()!;
        const keys = [...m.dev(dev).map.keys()];
        const v = keys.length && r.chance(0.85) ? r.pick(keys) : r.int(this.opts.maxVBlock);
        this.note(`removeMapping(${dev}, ${v})`);
        const got = this.md.removeMapping(dev, v);
        const want = m.remove(dev, v);
        assert.deepEqual(got ? { block: got.block, time: got.time } : undefined, want, `removeMapping(${dev}, ${v}) returned the old mapping`);
        break;
      }
      case 'removeRange': {
        const dev = this.anyDevice()!;
        const from = r.int(this.opts.maxVBlock);
        const to = from + (r.chance(0.2) ? r.int(this.opts.maxVBlock) : r.range(0, 600));
        this.note(`removeRange(${dev}, ${from}, ${to})`);
        const got = this.md.removeRange(dev, from, to);
        assert.equal(got, m.removeRange(dev, from, to), `removeRange(${dev}, ${from}, ${to}) count`);
        break;
      }
      case 'createThin': {
        const id = this.newId();
        this.note(`createThin(${id})`);
        this.md.createThin(id);
        m.createThin(id);
        break;
      }
      case 'createSnap': {
        const id = this.newId();
        const origin = this.anyDevice()!;
        this.note(`createSnap(${id}, ${origin})`);
        this.md.createSnap(id, origin);
        m.createSnap(id, origin);
        break;
      }
      case 'deleteDevice': {
        const id = this.anyDevice()!;
        this.note(`deleteDevice(${id})`);
        this.md.deleteDevice(id);
        m.deleteDevice(id);
        break;
      }
      case 'setTransactionId': {
        const next = r.chance(0.1) ? r.int(2 ** 52) : m.transactionId + 1;
        this.note(`setTransactionId(${m.transactionId}, ${next})`);
        this.md.setTransactionId(m.transactionId, next);
        m.setTransactionId(next);
        break;
      }
      case 'metaSnap': {
        if (m.held) {
          this.note('releaseMetadataSnap()');
          this.md.releaseMetadataSnap();
          m.releaseMetadataSnap();
          if (r.chance(0.5)) this.commit();
        } else {
          this.note('reserveMetadataSnap()');
          this.md.reserveMetadataSnap();
          m.reserveMetadataSnap();
          this.commits++;
          this.opts.onCommit?.(this);
        }
        break;
      }
      case 'commit':
        this.commit();
        break;
      case 'abort':
        this.abort();
        break;
      case 'reopen':
        if (r.chance(0.5)) this.commit();
        this.reopen();
        break;
      case 'release': {
        const b = this.allocate();
        this.note(`allocate ${b} then releaseDataBlock`);
        this.md.releaseDataBlock(b);
        m.pending.delete(b);
        break;
      }
      case 'resizeData': {
        const n = m.nrDataBlocks + r.range(1, 20000);
        this.note(`resizeData(${n})`);
        this.md.growData(n);
        m.resizeData(n);
        break;
      }
      case 'misuse':
        this.misuse();
        break;
    }
  }

  /** Calls that must fail with a stable code and change nothing. */
  private misuse(): void {
    const m = this.model;
    const r = this.r;
    const dev = this.anyDevice();
    const missing = this.newId();
    const k = r.int(8);
    this.note(`misuse #${k}`);
    switch (k) {
      case 0:
        if (dev !== undefined) expectThinError(() => this.md.createThin(dev), 'E_DEVICE_EXISTS', `createThin(${dev}) of an existing device`);
        break;
      case 1:
        expectThinError(() => this.md.createSnap(missing, missing), 'E_NO_DEVICE', `createSnap(${missing}) of a missing origin`);
        break;
      case 2:
        expectThinError(() => this.md.insertMapping(missing, 5, 0), 'E_NO_DEVICE', `insertMapping on missing device ${missing}`);
        break;
      case 3:
        if (dev !== undefined) expectThinError(() => this.md.insertMapping(dev, 5, m.nrDataBlocks), 'E_RANGE', 'insertMapping past the data device');
        break;
      case 4:
        expectThinError(() => this.md.setTransactionId(m.transactionId + 1, 7), 'E_TRANSACTION_MISMATCH', 'setTransactionId with a wrong current id');
        break;
      case 5:
        if (m.held) expectThinError(() => this.md.reserveMetadataSnap(), 'E_METADATA_SNAP_EXISTS', 'second reserveMetadataSnap');
        else expectThinError(() => this.md.releaseMetadataSnap(), 'E_NO_METADATA_SNAP', 'releaseMetadataSnap with none held');
        break;
      case 6:
        expectThinError(() => this.md.createThin(2 ** 24), 'E_INVALID', 'createThin(2^24)');
        break;
      case 7:
        expectThinError(() => this.md.deleteDevice(missing), 'E_NO_DEVICE', `deleteDevice(${missing})`);
        break;
    }
  }

  run(steps: number): void {
    for (let i = 0; i < steps; i++) this.step();
  }
}

// ------------------------------------------------------------------------------ the CLI


export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run `node bin/thinsim.js ARGS` (the built CLI) with a timeout; never throws. */
export function thinsim(args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): CliResult {
  const bin = path.join(repoRoot(), 'bin', 'thinsim.js');
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, maxBuffer: 1 << 30, input: opts.input,
  });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut };
}

/** Require exit 0 and return stdout. */
export function thinsimOk(args: readonly string[]): string {
  const r = thinsim(args);
  if (r.status !== 0) throw new Error(`thinsim ${args.join(' ')} exited ${r.status}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Like thinsim(), without blocking: several CLI runs can overlap. */
export function thinsimAsync(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return runAsync(process.execPath, [path.join(repoRoot(), 'bin', 'thinsim.js'), ...args], opts);
}

/** Run any program without blocking, with a timeout; never rejects. */
export function runAsync(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', (e) => resolve({ status: null, signal: null, stdout: '', stderr: String(e), timedOut: false }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 60_000);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/**
 * Random pool workloads for the thin-layer suites: a driver that applies the same random
 * operations (writes, overwrites, removes, create/snapshot/delete, transaction ids, metadata
 * snapshots, commit/abort/reopen, data growth, and misuse that must fail with a stable code)
 * to a ThinMetadata and to the PoolModel (metadata-model.ts), checking each allocation against
 * the model's idea of what is free.
 *
 * Every step is appended to `log`, so a failing test can print the seed and the last steps.
 */

import assert from 'node:assert/strict';
import type { Rand } from '../../support/random';
import type { ThinMetadata } from '../../src/thin/metadata';
import type { PoolModel } from './metadata-model';
import { expectThinError } from './metadata-checks';

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

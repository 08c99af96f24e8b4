/**
 * containerd's snapshotter semantics over a thinsim layer store: the service behind
 * the gRPC API (server.ts), usable and testable without gRPC.
 *
 * Contract (containerd's overlayfs and devmapper snapshotters are the reference):
 * - Each snapshot is one thin device (a layer of the LayerStore). Kinds: active
 *   (writable; Prepare), view (read-only; View: without a parent, an empty filesystem,
 *   a snapshot of the base device), committed (frozen; Commit). Only
 *   committed snapshots may be parents; Commit needs an active key and a new name and
 *   removes the key; Remove needs no children. The first Prepare without a parent
 *   creates the base device with its filesystem (LayerStore).
 * - Errors (see status.ts): unknown key or parent -> NotFound; an existing key or name
 *   -> AlreadyExists; a parent that is not committed, a bad key, bad labels or a bad
 *   filter -> InvalidArgument; Commit of a non-active snapshot, Remove with children,
 *   Commit or Remove while the loop device is mounted -> FailedPrecondition.
 * - Mounts: active and view snapshots are attached as loop devices at Prepare / View
 *   and at open (restart), committed ones on their first Mounts call (a writable one
 *   takes a MountHost spare, one of which is kept ready; Commit and Remove release the
 *   loop device as a spare when the kernel holds nothing of it); a mount is
 *   {type: ext4|xfs, source: /dev/loopN, options}: rw for active snapshots; views and
 *   committed snapshots are read-only at the loop and the mount (ro + noload for ext4,
 *   ro + norecovery for xfs); xfs always adds nouuid.
 * - Records (records.ts) are written before a device is created and removed after it
 *   is deleted; open() drops records without a layer. Crash points
 *   `containerd:prepare:N`, `containerd:commit:N`, `containerd:remove:N` follow step N
 *   (numbered in each method; src/crash-points.ts); the layer store's
 *   `layers:create:N`/`layers:delete:N` cover the device transactions in between.
 * - Requests run one at a time, in arrival order (a FIFO): two requests on one parent
 *   never interleave.
 * - asyncRemove: Remove only forgets the snapshot (its index entry); its device and
 *   device record stay until Cleanup deletes them. Cleanup deletes every device record
 *   (and its device) that no snapshot names, except the base.
 * - discardBlocks: discard a device's provisioned ranges before deleting it, so a
 *   sparse data file gives the space back.
 */
import { crashPoint } from '../crash-points';
import { ThinError } from '../errors';
import { LayerStore, type LayerInfo, type Filesystem } from '../layers/snapshotter';
import { attachDevice, mountedAt, type Attachment } from './attach';
import { matches, parseFilters } from './filters';
import { SnapshotRecords, checkLabels, type SnapshotEntry, type SnapshotUsage } from './records';
import { precondition } from './status';
import { measureUsage } from './usage';

export type Kind = 'active' | 'committed' | 'view';
export interface Mount { type: string; source: string; target: string; options: string[] }
export interface SnapshotInfo { name: string; parent: string; kind: Kind; created: Date; updated: Date; labels: Record<string, string> }

export interface SnapshotterOptions {
  baseSize?: number;
  fsType?: 'ext4' | 'xfs';
  /** Extra mkfs arguments for the base device (devmapper's fs_options). */
  fsOptions?: string[];
  asyncRemove?: boolean;
  discardBlocks?: boolean;
  /** The pool's periodic commit interval in ms (default 1000). */
  commitInterval?: number;
}

const MAX_KEY = 255;



function checkName(what: string, key: unknown): string {
  if (typeof key !== 'string' || key === '') throw new ThinError('E_INVALID', `${what} is empty: name the snapshot`);
  if (key.length > MAX_KEY) throw new ThinError('E_INVALID', `${what} is ${key.length} characters long; thinsim keeps keys of at most ${MAX_KEY}`, { length: key.length });
  // eslint-disable-next-line no-control-regex
  const bad = /[\x00-\x1f\x7f]/.exec(key);
  if (bad) throw new ThinError('E_INVALID', `${what} ${JSON.stringify(key.slice(0, 80))} holds control character ${JSON.stringify(bad[0])}; use printable characters`);
  if (key.startsWith(' ')) throw new ThinError('E_INVALID', `${what} ${JSON.stringify(key.slice(0, 80))} starts with a space`);
  return key;
}

export class ThinSnapshotter {
  private readonly attached = new Map<string, Attachment>();
  private queue: Promise<unknown> = Promise.resolve();
  readonly records: SnapshotRecords;

  private constructor(readonly store: LayerStore, private readonly opts: Required<Omit<SnapshotterOptions, 'commitInterval' | 'baseSize' | 'fsType' | 'fsOptions'>>) {
    this.records = new SnapshotRecords(store.pool.dir);
  }

  /** Open the pool read-write (its lock), reconcile the records, re-attach active snapshots and views. */
  static async open(poolDir: string, opts: SnapshotterOptions = {}): Promise<ThinSnapshotter> {
    const store = await LayerStore.open(poolDir, {
      ...(opts.baseSize !== undefined ? { baseSize: opts.baseSize } : {}),
      filesystem: (opts.fsType ?? 'ext4') as Filesystem,
      fsOptions: opts.fsOptions ?? [],
      commitInterval: opts.commitInterval ?? 1000,
    });
    const s = new ThinSnapshotter(store, { asyncRemove: opts.asyncRemove ?? false, discardBlocks: opts.discardBlocks ?? true });
    // containerd prepares a snapshot for every container and layer: keep a loop device ready.
    store.host.keepSpares(1);
    try {
      s.records.reconcile(new Set(store.list().map((l) => l.name)));
      for (const l of store.list()) if (l.kind !== 'committed') await s.attach(l);
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  /** Run `fn` after every request before it (one at a time, FIFO). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined); // the caller gets the error; the queue only orders
    return run;
  }

  private layer(key: string, what = 'snapshot'): LayerInfo {
    const l = this.store.list().find((x) => x.name === key);
    if (!l) throw new ThinError('E_NOT_FOUND', `${what} ${JSON.stringify(key.slice(0, 300))} does not exist`, { key });
    return l;
  }

  private exists(key: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.store.records.readIndex().layers, key);
  }

  private async attach(l: LayerInfo): Promise<Attachment> {
    const have = this.attached.get(l.name);
    if (have) return have;
    const a = await attachDevice(this.store.host, l.deviceId, { readOnly: l.kind !== 'active' });
    this.attached.set(l.name, a);
    return a;
  }

  private async detach(key: string, why: string): Promise<void> {
    const a = this.attached.get(key);
    if (!a) return;
    const at = mountedAt(a.device);
    if (at.length) throw precondition(`snapshot ${JSON.stringify(key)} is mounted (${a.device} at ${at.join(', ')}); unmount it before ${why}`, { key });
    await a.release();
    this.attached.delete(key);
  }

  private mounts(l: LayerInfo, a: Attachment): Mount[] {
    const fsType = this.store.filesystem();
    if (fsType === 'none') throw new ThinError('E_UNSUPPORTED', 'the pool\'s base device has no filesystem (made with filesystem none); containerd needs ext4 or xfs');
    // "rw" is the default; it is spelled out so `ctr snapshots mounts` prints a mount command that runs.
    const options: string[] = l.kind === 'active' ? ['rw'] : ['ro', ...(fsType === 'ext4' ? ['noload'] : ['norecovery'])];
    if (fsType === 'xfs') options.push('nouuid');
    return [{ type: fsType, source: a.device, target: '', options }];
  }

  private info(l: LayerInfo, e: SnapshotEntry | undefined): SnapshotInfo {
    const created = new Date(e?.created ?? l.created);
    return { name: l.name, parent: l.parent ?? '', kind: l.kind, created, updated: e ? new Date(e.updated) : created, labels: { ...(e?.labels ?? {}) } };
  }

  // ------------------------------------------------------------------ the RPCs

  prepare(key: string, parent: string, labels: Record<string, string> = {}): Promise<Mount[]> {
    return this.serial(() => this.create('active', key, parent, labels));
  }

  view(key: string, parent: string, labels: Record<string, string> = {}): Promise<Mount[]> {
    return this.serial(() => this.create('view', key, parent, labels));
  }

  private async create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    checkName('key', key);
    checkLabels(labels);
    if (this.exists(key)) throw new ThinError('E_DEVICE_EXISTS', `snapshot ${JSON.stringify(key)} already exists`, { key });
    if (parent) {
      const p = this.layer(checkName('parent', parent), 'parent');
      if (p.kind !== 'committed') throw new ThinError('E_INVALID', `parent ${JSON.stringify(parent)} is ${p.kind === 'active' ? 'an active snapshot' : 'a view'}, not a committed snapshot; commit it first`, { key, parent });
    }
    const now = new Date().toISOString();
    this.records.update((f) => { f.snapshots[key] = { labels, created: now, updated: now }; });
    crashPoint('containerd:prepare:1');
    let l: LayerInfo;
    try {
      l = kind === 'active' ? await this.store.prepare(key, parent || undefined) : await this.store.view(key, parent || undefined);
    } catch (e) {
      this.records.update((f) => { delete f.snapshots[key]; });
      throw e;
    }
    crashPoint('containerd:prepare:2');
    let a: Attachment;
    try {
      a = await this.attach(l);
    } catch (e) {
      // Undo, so Prepare is all or nothing; the attach error is what the caller needs.
      await this.removeNow(l);
      throw e;
    }
    crashPoint('containerd:prepare:3');
    return this.mounts(l, a);
  }

  mountsOf(key: string): Promise<Mount[]> {
    return this.serial(async () => {
      const l = this.layer(key);
      return this.mounts(l, await this.attach(l));
    });
  }

  commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    return this.serial(async () => {
      checkName('name', name);
      checkLabels(labels);
      const l = this.layer(key);
      if (l.kind !== 'active') throw precondition(`snapshot ${JSON.stringify(key)} is ${l.kind === 'view' ? 'a view' : 'committed'}; only active snapshots can be committed`, { key });
      if (this.exists(name)) throw new ThinError('E_DEVICE_EXISTS', `snapshot ${JSON.stringify(name)} already exists; commit under another name`, { name });
      await this.detach(key, 'committing it');
      crashPoint('containerd:commit:1');
      const usage = await measureUsage(this.store, key);
      const now = new Date().toISOString();
      this.records.update((f) => { f.snapshots[name] = { labels, created: now, updated: now, usage }; });
      crashPoint('containerd:commit:2');
      try {
        await this.store.commit(name, key);
      } catch (e) {
        this.records.update((f) => { delete f.snapshots[name]; });
        throw e;
      }
      crashPoint('containerd:commit:3');
      this.records.update((f) => { delete f.snapshots[key]; });
      crashPoint('containerd:commit:4');
    });
  }

  remove(key: string): Promise<void> {
    return this.serial(async () => {
      const l = this.layer(key);
      const children = this.store.list().filter((c) => c.parent === l.name).map((c) => c.name);
      if (children.length) throw precondition(`cannot remove snapshot ${JSON.stringify(key)}: it has children (${children.slice(0, 5).join(', ')}${children.length > 5 ? ', ...' : ''}); remove them first`, { key, children: children.length });
      await this.detach(key, 'removing it');
      crashPoint('containerd:remove:1');
      if (this.opts.asyncRemove) this.store.forget(key);
      else await this.removeNow(l);
      crashPoint('containerd:remove:2');
      this.records.update((f) => { delete f.snapshots[key]; });
      crashPoint('containerd:remove:3');
    });
  }

  /** Discard (when asked) and delete a snapshot's device with its record (LayerStore.remove). */
  private async removeNow(l: LayerInfo): Promise<void> {
    await this.store.remove(l.name, { discard: this.opts.discardBlocks });
  }

  stat(key: string): Promise<SnapshotInfo> {
    return this.serial(async () => this.info(this.layer(key), this.records.read().snapshots[key]));
  }

  /** Update labels: no paths replaces them all; "labels" replaces them all; "labels.K" sets K (or drops it when empty). */
  update(key: string, labels: Record<string, string>, paths: readonly string[]): Promise<SnapshotInfo> {
    return this.serial(async () => {
      const l = this.layer(key);
      const f = this.records.read();
      const now = new Date().toISOString();
      const old = f.snapshots[key] ?? { labels: {}, created: l.created, updated: now };
      let next: Record<string, string> = { ...old.labels };
      if (paths.length === 0) next = { ...labels };
      for (const p of paths) {
        if (p === 'labels') next = { ...labels };
        else if (p.startsWith('labels.')) {
          const k = p.slice(7);
          // Own labels only: "labels.constructor" must not find Object's members.
          if (Object.prototype.hasOwnProperty.call(labels, k) && labels[k] !== '') next[k] = labels[k];
          else delete next[k];
        } else {
          throw new ThinError('E_INVALID', `cannot update field ${JSON.stringify(p)} of a snapshot; only labels and labels.KEY can change`, { key, path: p });
        }
      }
      checkLabels(next);
      f.snapshots[key] = { ...old, labels: next, updated: now };
      this.records.write(f);
      return this.info(l, f.snapshots[key]);
    });
  }

  list(filters: readonly string[] = []): Promise<SnapshotInfo[]> {
    return this.serial(async () => {
      const f = parseFilters(filters);
      const recs = this.records.read().snapshots;
      return this.store.list().map((l) => this.info(l, recs[l.name])).filter((i) => matches(f, i));
    });
  }

  usage(key: string): Promise<SnapshotUsage> {
    return this.serial(async () => {
      const l = this.layer(key);
      const frozen = this.records.read().snapshots[key]?.usage;
      if (l.kind === 'committed' && frozen) return frozen;
      return measureUsage(this.store, key);
    });
  }

  /** Delete every device record (and device) that no snapshot names, except the base; returns their cache-ids. */
  cleanup(): Promise<string[]> {
    return this.serial(() => this.store.removeOrphans({ discard: this.opts.discardBlocks }));
  }

  /** Snapshots whose loop device is mounted now (a running container, or an operator's mount). */
  mounted(): Array<{ key: string; device: string; at: string[] }> {
    return [...this.attached].map(([key, a]) => ({ key, device: a.device, at: mountedAt(a.device) })).filter((m) => m.at.length > 0);
  }

  /** The loop device of an attached snapshot (for tests and `ls`). */
  attachedDevice(key: string): string | undefined {
    return this.attached.get(key)?.device;
  }

  /** Wait for requests in flight, detach everything (newest first), close the pool (committing it); a mounted device fails the close (E_MOUNTED). */
  async close(): Promise<void> {
    await this.queue;
    const errors: unknown[] = [];
    for (const [key, a] of [...this.attached].reverse()) {
      // A mounted one is left to the mount host's close, which waits for it and reports it.
      if (mountedAt(a.device).length) continue;
      try {
        await a.detach();
        this.attached.delete(key);
      } catch (e) {
        errors.push(e);
      }
    }
    await this.store.close();
    if (errors.length) throw new ThinError('E_IO', `closing the snapshotter: ${errors.map((e) => (e as Error).message).join('; ')}`);
  }
}

/**
 * Image layers as thin snapshots: a snapshotter over a pool, as Docker's devicemapper
 * graph driver and containerd's devmapper snapshotter build one.
 *
 * Contract:
 * - A layer is one thin device. The first layer without a parent snapshots the base
 *   device, which is created on first use (base size, default 10G) and formatted
 *   through the NBD export (ext4 with Docker's options, xfs on request, or none for
 *   block-level work). A layer is a snapshot of its parent (O(1), shares every chunk).
 * - Kinds: `active` (writable; from prepare), `committed` (frozen; from commit, may be
 *   a parent), `view` (read-only snapshot of a committed layer). Writes to committed
 *   layers and views are refused with E_READ_ONLY, here and at the NBD export.
 * - Every device creation and deletion runs Docker's transaction protocol
 *   (device-transactions.ts); opening read-write rolls back an unfinished one, removes
 *   what writes killed mid-way left (durable.ts), and settles the scratch layers of
 *   processes that are gone (scratch.ts). Records live in POOL/docker in Docker's layout.
 * - A new snapshot is refused while free data or metadata space is below
 *   `minFreeSpace` (Docker's dm.min_free_space, 10 %). `remove` discards the layer's
 *   provisioned ranges first (Docker's dm.blkdiscard) so a loop-lvm data file gives
 *   the space back, and refuses while the layer has children or is mounted. forget()
 *   drops only the index entry (containerd's async remove); removeOrphans() deletes
 *   every device record no layer names, except the base.
 * - usage() is thin_ls's arithmetic (pool.sharing()); diff() is thin_delta's ranges
 *   in bytes, touching stretches of one kind merged as thin_delta prints them
 *   (store-reports.ts).
 * - One read-write opener per pool (the pool lock); openReadOnly works beside it.
 */
import { sweepInterrupted } from '../durable';
import { ThinError, type ThinErrorCode } from '../errors';
import { Pool } from '../pool/pool';
import { MountHost, makeFilesystem, filesystemUuid, type Filesystem, type MountedTree } from '../mounts';
import { DeviceTransactions, type Recovery } from './device-transactions';
import { checkFreeSpace, layerDiff, layerUsage, orderLayers, toInfo, type LayerDiffRange, type LayerInfo, type LayerUsage } from './store-reports';
import { ownerOf, setOwners, settleAbandoned } from './scratch';
import { Tree } from './tree';
import {
  DIGEST_RE, DockerRecords, newCacheId,
  type DevInfo, type LayerIndex, type LayerKind, type LayerRecord,
} from './records';

export type { LayerKind, Filesystem, LayerInfo, LayerUsage, LayerDiffRange };


export interface LayerStoreOptions {
  baseSize?: number;
  filesystem?: Filesystem;
  minFreeSpace?: number;
  /** Extra mkfs arguments for the base device (containerd devmapper's fs_options). */
  fsOptions?: string[];
  /** The pool's periodic commit interval in ms (default 1000; 0: commit only at fixed points, as synth needs). */
  commitInterval?: number;
}

export interface CommitMeta { chainId?: string; diffId?: string; parentChainId?: string; size?: number }

export const DEFAULT_BASE_SIZE = 10 * 2 ** 30;
export const DEFAULT_MIN_FREE_SPACE = 0.10;
const KEY_RE = /^[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,254}$/;

export class LayerStore {
  /** What open() rolled back or dropped (undefined for read-only stores). */
  readonly recovery: Recovery | undefined;
  private readonly tx: DeviceTransactions | undefined;
  private readonly mounts = new Map<string, Set<MountedTree>>();
  private readonly opts: Required<Omit<LayerStoreOptions, 'commitInterval'>>;

  private constructor(readonly pool: Pool, readonly records: DockerRecords, opts: LayerStoreOptions, tx: DeviceTransactions | undefined, recovery: Recovery | undefined,
    /** The owner of every export, loop device and mount this store makes (mounts layer). */
    readonly host: MountHost,
    /** What open() cleaned up after dead processes' mounts, one line each. */
    readonly staleMounts: string[]) {
    this.tx = tx;
    this.recovery = recovery;
    const minFreeSpace = opts.minFreeSpace ?? DEFAULT_MIN_FREE_SPACE;
    if (!(minFreeSpace >= 0 && minFreeSpace < 1)) throw new ThinError('E_INVALID', `minFreeSpace must be a fraction in [0, 1), got ${minFreeSpace}`);
    const baseSize = opts.baseSize ?? DEFAULT_BASE_SIZE;
    if (!Number.isSafeInteger(baseSize) || baseSize <= 0 || baseSize % 512 !== 0) throw new ThinError('E_INVALID', `baseSize must be a positive multiple of 512 bytes, got ${baseSize}`);
    const filesystem = opts.filesystem ?? 'ext4';
    if (!['ext4', 'xfs', 'none'].includes(filesystem)) throw new ThinError('E_INVALID', `filesystem must be ext4, xfs or none, got "${filesystem}"`);
    this.opts = { baseSize, filesystem, minFreeSpace, fsOptions: opts.fsOptions ?? [] };
  }

  /** Open the pool in `poolDir` read-write, create the records directory, roll back an unfinished transaction. */
  static async open(poolDir: string, opts: LayerStoreOptions = {}): Promise<LayerStore> {
    const pool = Pool.open(poolDir, opts.commitInterval === undefined ? {} : { commitInterval: opts.commitInterval });
    try {
      const { host, cleaned } = await MountHost.open(pool);
      const records = new DockerRecords(poolDir);
      const tx = new DeviceTransactions(pool, records);
      const recovery = await tx.recover();
      recovery.interrupted = sweepInterrupted(records.paths.root, { recursive: true });
      const store = new LayerStore(pool, records, opts, tx, recovery, host, cleaned);
      const settled = await settleAbandoned(records, (n) => store.remove(n));
      recovery.abandoned = settled.removed;
      recovery.adopted = settled.adopted;
      return store;
    } catch (e) {
      await pool.close();
      throw e;
    }
  }

  /** For ls/stat/usage/diff/cat/files while another process holds the pool read-write. */
  static async openReadOnly(poolDir: string): Promise<LayerStore> {
    const pool = Pool.open(poolDir, { readOnly: true });
    try {
      const { host, cleaned } = await MountHost.open(pool);
      return new LayerStore(pool, new DockerRecords(poolDir, true), {}, undefined, undefined, host, cleaned);
    } catch (e) {
      await pool.close();
      throw e;
    }
  }

  private writable(): DeviceTransactions {
    if (!this.tx) throw new ThinError('E_READ_ONLY', `the layer store of ${this.pool.dir} is open read-only`);
    return this.tx;
  }

  // ------------------------------------------------------------------ lifecycle of layers

  /**
   * An active snapshot of `parent` (or of the base device). `scratch`: the layer is this
   * process's work in progress, removed by the next read-write open once this process is
   * gone (until it is committed, or `adopt`ed); with `until`, kept instead if that path
   * under POOL/docker exists by then (scratch.ts).
   */
  async prepare(key: string, parent?: string, opts: { scratch?: boolean; until?: string } = {}): Promise<LayerInfo> {
    return this.snapshot(key, parent, 'active', opts.scratch || opts.until ? ownerOf(opts.until) : undefined);
  }

  /**
   * Make layers this process's scratch work (one index write): if it is killed before it
   * removes them, the next read-write open removes them, unless `until` exists then
   * (scratch.ts). `container rm` claims its layers before it removes its record.
   */
  claim(names: string[], until?: string): void {
    this.writable();
    setOwners(this.records, names.map((n) => this.record(n).name), ownerOf(until));
  }

  /** The work on these scratch layers is done: they are ordinary layers now (one index write). */
  adopt(names: string[]): void {
    this.writable();
    setOwners(this.records, names.map((n) => this.record(n).name), undefined);
  }

  /** A read-only snapshot of committed layer `parent`, or without one of the base device (an empty filesystem), as containerd's View. */
  async view(key: string, parent?: string): Promise<LayerInfo> {
    return this.snapshot(key, parent || undefined, 'view');
  }

  private async snapshot(key: string, parentName: string | undefined, kind: LayerKind, owner?: LayerRecord['owner']): Promise<LayerInfo> {
    const tx = this.writable();
    checkKey(key);
    const idx = this.records.readIndex();
    if (idx.layers[key]) throw new ThinError('E_DEVICE_EXISTS', `layer "${key}" already exists (${idx.layers[key].kind}); pick another key or remove it first`, { layer: key });
    let parent: LayerRecord | undefined;
    let origin: DevInfo;
    if (parentName !== undefined) {
      parent = this.record(parentName);
      if (parent.faulty) throw new ThinError('E_INVALID', `parent "${parent.name}" is faulty (${parent.faulty}); remove it with thinsim layer rm`, { layer: parent.name });
      if (parent.kind !== 'committed') {
        throw new ThinError('E_INVALID', `parent "${parent.name}" is ${parent.kind === 'active' ? 'an active snapshot' : 'a view'}; only committed layers can be parents: commit it first`, { layer: parent.name });
      }
      origin = this.devInfo(parent);
    } else {
      origin = await this.ensureBase();
    }
    this.checkFreeSpace();
    const cacheId = newCacheId();
    const rec: LayerRecord = { name: key, kind, ...(parent ? { parent: parent.name } : {}), cacheId, created: new Date().toISOString(), ...(owner ? { owner } : {}) };
    const info = await tx.create(cacheId, origin.size, origin.device_id, rec);
    return toInfo(rec, info);
  }

  /**
   * Undo the layers a failed operation made (`names`, oldest first): remove each that
   * exists, newest first, then throw `cause`. A layer that cannot be removed is marked
   * faulty (kept for inspection and `remove` only) and the error thrown says so, with the
   * original failure first.
   */
  async rollback(names: string[], cause: unknown): Promise<never> {
    const failed: string[] = [];
    const present = new Set(Object.keys(this.records.readIndex().layers));
    for (const n of [...names].reverse()) {
      if (!present.has(n)) continue;
      try {
        await this.remove(n);
      } catch (e) {
        const why = (e as Error).message;
        try {
          this.markFaulty(n, `a rollback could not remove it: ${why}`);
          failed.push(`layer "${n}" could not be removed (${why}) and is marked faulty`);
        } catch (e2) {
          failed.push(`layer "${n}" could not be removed (${why}) nor marked faulty (${(e2 as Error).message})`);
        }
      }
    }
    if (!failed.length) throw cause;
    const c = cause as { code?: ThinErrorCode; message?: string };
    throw new ThinError(c.code ?? 'E_IO', `${c.message ?? String(cause)}; then the rollback failed: ${failed.join('; ')}; remove it with thinsim layer rm once the cause is fixed`, { rollback: failed }, { cause });
  }

  /** Mark a layer faulty (see LayerRecord.faulty): prepare and view refuse it as a parent; remove still works. */
  markFaulty(name: string, why: string): void {
    const idx = this.records.readIndex();
    const rec = idx.layers[this.record(name).name];
    rec.faulty = why;
    this.records.writeIndex(idx);
  }

  /**
   * Freeze active snapshot `key` as committed layer `name` (with its image identity, when
   * given). A scratch layer becomes an ordinary one, unless `keepOwner` (its owner's work
   * goes on: a container's init layer).
   */
  async commit(name: string, key: string, meta: CommitMeta = {}, opts: { keepOwner?: boolean } = {}): Promise<LayerInfo> {
    this.writable();
    checkKey(name);
    const idx = this.records.readIndex();
    const rec = idx.layers[key];
    if (!rec) throw new ThinError('E_NOT_FOUND', `no active snapshot "${key}"; prepare it first (thinsim layer prepare)`, { layer: key });
    if (rec.kind !== 'active') throw new ThinError('E_INVALID', `"${key}" is ${rec.kind === 'view' ? 'a view' : 'already committed'}; only active snapshots can be committed`, { layer: key });
    if (name !== key && idx.layers[name]) throw new ThinError('E_DEVICE_EXISTS', `layer "${name}" already exists; commit under another name`, { layer: name });
    if (this.mounts.get(key)?.size) throw new ThinError('E_MOUNTED', `"${key}" is mounted; unmount it before committing`, { layer: key });
    for (const [what, v] of [['chainId', meta.chainId], ['diffId', meta.diffId], ['parentChainId', meta.parentChainId]] as const) {
      if (v !== undefined && !DIGEST_RE.test(v)) throw new ThinError('E_INVALID', `${what} must be "sha256:" and 64 lowercase hex digits, got "${v}"`);
    }
    if (meta.size !== undefined && !(Number.isSafeInteger(meta.size) && meta.size >= 0)) throw new ThinError('E_INVALID', `size must be a whole number of bytes, got ${meta.size}`);
    if (meta.chainId) {
      const other = Object.values(idx.layers).find((l) => l.chainId === meta.chainId);
      if (other) throw new ThinError('E_DEVICE_EXISTS', `ChainID ${meta.chainId} is already layer "${other.name}"`, { layer: other.name });
    }
    const parentChainId = meta.parentChainId ?? (rec.parent ? idx.layers[rec.parent]?.chainId : undefined);
    // The layer's bytes are durable before it is called committed.
    await this.pool.flush();
    if (meta.chainId) {
      this.records.writeLayerdb({ chainId: meta.chainId, cacheId: rec.cacheId, diffId: meta.diffId, parent: parentChainId, size: meta.size });
    }
    const next: LayerRecord = { ...rec, name, kind: 'committed' };
    if (!opts.keepOwner) delete next.owner;
    if (meta.chainId) next.chainId = meta.chainId;
    if (meta.diffId) next.diffId = meta.diffId;
    delete idx.layers[key];
    idx.layers[name] = next;
    this.records.writeIndex(idx);
    return toInfo(next, this.devInfo(next));
  }

  /**
   * Remove a layer: refused while it has children or is mounted; discards (unless
   * `discard: false`), then deletes.
   */
  async remove(name: string, opts: { discard?: boolean } = {}): Promise<void> {
    const tx = this.writable();
    const rec = this.record(name);
    const children = Object.values(this.records.readIndex().layers).filter((l) => l.parent === rec.name).map((l) => l.name);
    if (children.length > 0) {
      throw new ThinError('E_INVALID', `layer "${rec.name}" has children (${children.join(', ')}); remove them first`, { layer: rec.name, children });
    }
    if (this.mounts.get(rec.name)?.size) throw new ThinError('E_MOUNTED', `layer "${rec.name}" is mounted; unmount it first`, { layer: rec.name });
    this.devInfo(rec); // E_CORRUPT if its record is missing
    await tx.delete(rec.cacheId, rec.name, opts.discard !== false ? (d) => this.discardDevice(d) : undefined);
    if (rec.chainId) this.records.removeLayerdb(rec.chainId);
  }

  /**
   * Forget a layer without deleting its device (containerd's async remove): its index
   * entry goes, its device record stays, an orphan for removeOrphans(). Refused while it
   * has children.
   */
  forget(name: string): void {
    this.writable();
    const idx = this.records.readIndex();
    const rec = idx.layers[this.record(name).name];
    const children = Object.values(idx.layers).filter((l) => l.parent === rec.name).map((l) => l.name);
    if (children.length > 0) throw new ThinError('E_INVALID', `layer "${rec.name}" has children (${children.join(', ')}); remove them first`, { layer: rec.name, children });
    delete idx.layers[rec.name];
    this.records.writeIndex(idx);
  }

  /**
   * Delete every device record (and its device) that no layer names, except the base:
   * what forget() and killed operations leave. Discards first unless `discard: false`.
   * Returns their cache-ids.
   */
  async removeOrphans(opts: { discard?: boolean } = {}): Promise<string[]> {
    const tx = this.writable();
    const named = new Set(Object.values(this.records.readIndex().layers).map((l) => l.cacheId));
    const out: string[] = [];
    for (const hash of this.records.listDevInfos().keys()) {
      if (hash === '' || named.has(hash)) continue; // '': the base device's record
      await tx.delete(hash, undefined, opts.discard !== false ? (i) => this.discardDevice(i) : undefined);
      out.push(hash);
    }
    return out;
  }

  /** Discard every provisioned range of a device (Docker's dm.blkdiscard before deleting). */
  private async discardDevice(dev: DevInfo): Promise<void> {
    for (const run of this.pool.blockStatus(dev.device_id, 0, dev.size)) {
      if (run.mapped) await this.pool.discard(dev.device_id, run.offset, run.length);
    }
  }

  // ------------------------------------------------------------------ lookups and reports

  /** A layer by key, by ChainID ('sha256:...' or bare hex) or by a unique ChainID prefix. */
  stat(name: string): LayerInfo {
    const rec = this.record(name);
    return toInfo(rec, this.devInfo(rec));
  }

  /** Every layer, parents before children (siblings by creation time, then name). */
  list(): LayerInfo[] {
    return orderLayers(this.records);
  }

  /** Mapped, exclusive and shared bytes per layer, as thin_ls computes them. */
  usage(name?: string): LayerUsage[] {
    return layerUsage(this.pool, name === undefined ? this.list() : [this.stat(name)]);
  }

  /** Changed byte ranges from layer `a` to layer `b`, as thin_delta gives them. */
  diff(a: string, b: string): LayerDiffRange[] {
    return layerDiff(this.pool, this.stat(a).deviceId, this.stat(b).deviceId);
  }

  // ------------------------------------------------------------------ data

  /** Read bytes of a layer's device (unmapped ranges read as zeros). */
  async read(name: string, offset: number, length: number): Promise<Buffer> {
    return this.pool.read(this.stat(name).deviceId, offset, length);
  }

  /** Write bytes to an active layer; committed layers and views refuse (E_READ_ONLY). */
  async write(name: string, offset: number, data: Uint8Array): Promise<void> {
    return this.pool.write(this.writableLayer(name).deviceId, offset, data);
  }

  /** Discard a range of an active layer (E_READ_ONLY for committed layers and views). */
  async discard(name: string, offset: number, length: number): Promise<void> {
    return this.pool.discard(this.writableLayer(name).deviceId, offset, length);
  }

  private writableLayer(name: string): LayerInfo {
    this.writable();
    const l = this.stat(name);
    if (l.kind !== 'active') throw new ThinError('E_READ_ONLY', `layer "${l.name}" is ${l.kind === 'view' ? 'a view' : 'committed'} and cannot be written; prepare an active snapshot on top of it`, { layer: l.name });
    return l;
  }

  /** The filesystem on the base device ("none" before the base exists and with filesystem none). */
  filesystem(): Filesystem {
    const fsType = this.records.readDeviceSet().BaseDeviceFilesystem;
    return fsType === 'ext4' || fsType === 'xfs' ? fsType : 'none';
  }

  /** Mount a layer through NBD; read-only (and so exported) for committed layers and views. */
  async mount(name: string, opts: { readOnly?: boolean } = {}): Promise<{ path: string; file: string; unmount(): Promise<void> }> {
    const l = this.stat(name);
    const frozen = l.kind !== 'active' || this.pool.readOnly;
    if (opts.readOnly === false && frozen) {
      throw new ThinError('E_READ_ONLY', `layer "${l.name}" is ${l.kind === 'active' ? 'in a store opened read-only' : l.kind} and can only be mounted read-only`, { layer: l.name });
    }
    const readOnly = opts.readOnly ?? frozen;
    const m = await this.host.mount(l.deviceId, this.filesystem(), { readOnly });
    const set = this.mounts.get(l.name) ?? new Set<MountedTree>();
    this.mounts.set(l.name, set);
    set.add(m);
    let done: Promise<void> | undefined;
    return {
      path: m.path,
      file: m.file,
      unmount: () => {
        // A failed unmount (busy: E_MOUNTED) leaves the layer mounted: it may be retried.
        done ??= m.unmount().then(() => { set.delete(m); }, (e) => { done = undefined; throw e; });
        return done;
      },
    };
  }

  /**
   * Mount, run `fn` on the tree through a tree worker (tree.ts: a child process does the
   * fs calls), always unmount. Use this to read or change files.
   */
  async withTree<T>(name: string, fn: (tree: Tree) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
    return this.withMounted(name, (dir) => fn(new Tree(dir)), opts);
  }

  /**
   * Mount, run `fn` with the mount point, always unmount. The NBD server behind the mount
   * runs in this process: `fn` may hand the path to other processes (tools, a Tree), but
   * must not touch it with this process's own fs calls (they would share the server's
   * thread pool and event loop, and could deadlock).
   */
  async withMounted<T>(name: string, fn: (dir: string) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
    const m = await this.mount(name, opts);
    try {
      return await fn(m.path);
    } finally {
      await m.unmount();
    }
  }

  /** Expose a layer's device as a file (nbdfuse) for tools such as e2fsck or debugfs; read-only. */
  async withExportedFile<T>(name: string, fn: (file: string) => Promise<T>): Promise<T> {
    const e = await this.host.attach(this.stat(name).deviceId, { readOnly: true });
    try {
      return await fn(e.file);
    } finally {
      await e.detach();
    }
  }

  /**
   * Tear down every mount and attachment (mounts layer), then close the pool (committing
   * it). A mount that stays busy is reported (E_MOUNTED, naming its holders) after the
   * pool has been committed and closed: what the filesystem had not flushed by then is not
   * in the pool, as after a crash of that layer's filesystem.
   */
  async close(): Promise<void> {
    let failed: unknown;
    try {
      await this.host.close();
    } catch (e) {
      failed = e;
    }
    await this.pool.close();
    if (failed) throw failed;
  }

  // ------------------------------------------------------------------ internals

  private record(name: string): LayerRecord {
    if (typeof name !== 'string' || name === '') throw new ThinError('E_INVALID', 'name a layer (its key, ChainID or a ChainID prefix)');
    const idx: LayerIndex = this.records.readIndex();
    if (idx.layers[name]) return idx.layers[name];
    const hex = name.startsWith('sha256:') ? name.slice(7) : name;
    if (/^[0-9a-f]+$/.test(hex)) {
      const hits = Object.values(idx.layers).filter((l) => l.chainId && l.chainId.slice(7).startsWith(hex));
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) {
        throw new ThinError('E_INVALID', `"${name}" is ambiguous: it starts the ChainIDs of ${hits.map((l) => l.name).join(', ')}; give more digits`, { layer: name });
      }
    }
    throw new ThinError('E_NOT_FOUND', `no layer "${name}" in ${this.pool.dir}; see thinsim layer ls`, { layer: name });
  }

  private devInfo(rec: LayerRecord): DevInfo {
    const d = this.records.readDevInfo(rec.cacheId);
    if (!d) throw new ThinError('E_CORRUPT', `layer "${rec.name}" has no device record (${this.records.recordFile(rec.cacheId)}); reopen the store read-write to reconcile`, { layer: rec.name });
    return d;
  }

  /** Docker's poolHasFreeSpace: refuse a snapshot below min_free_space of data or metadata. */
  private checkFreeSpace(): void {
    checkFreeSpace(this.pool, this.opts.minFreeSpace);
  }

  /** Docker's setupBaseImage: reuse an initialized base; replace an uninitialized one; else create it. */
  private async ensureBase(): Promise<DevInfo> {
    const tx = this.writable();
    const old = this.records.readDevInfo('');
    if (old && old.initialized && !old.deleted) return old;
    if (old) await tx.delete('', undefined, (d) => this.discardDevice(d));
    const fsType = this.opts.filesystem;
    this.checkFreeSpace();
    const info = await tx.create('', this.opts.baseSize, undefined);
    const meta = this.records.readDeviceSet();
    this.records.writeDeviceSet({ ...meta, BaseDeviceFilesystem: fsType, BaseDeviceUUID: '' });
    let uuid = '';
    if (fsType !== 'none') {
      const e = await this.host.attach(info.device_id, { readOnly: false, name: 'base' });
      try {
        await makeFilesystem(e.file, fsType, this.opts.fsOptions);
        uuid = await filesystemUuid(e.file);
      } finally {
        await e.detach();
      }
    }
    await this.pool.flush();
    const done = { ...info, initialized: true };
    this.records.writeDevInfo('', done);
    this.records.writeDeviceSet({ ...this.records.readDeviceSet(), BaseDeviceUUID: uuid });
    return done;
  }
}

/** Keys are containerd's: any printable text (containerd's carry spaces and ChainIDs); never a file name here. */
function checkKey(key: string): void {
  if (typeof key !== 'string' || !KEY_RE.test(key)) {
    throw new ThinError('E_INVALID', `layer key ${JSON.stringify(key)} is not allowed: use 1-255 printable characters, not starting with a space`, { layer: key });
  }
}

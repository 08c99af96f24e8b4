/**
 * Docker's devicemapper records beside a pool.
 *
 * Contract:
 * - The records live in `POOL/docker/`, laid out as Docker lays out its root
 *   (/var/lib/docker), so someone who knows Docker recognises every file:
 *     devicemapper/metadata/<cache-id>           one device record (devInfo JSON:
 *                                               device_id, size, transaction_id,
 *                                               initialized, deleted)
 *     devicemapper/metadata/base                 the base device's record (hash "")
 *     devicemapper/metadata/deviceset-metadata   next_device_id, BaseDeviceUUID,
 *                                               BaseDeviceFilesystem
 *     devicemapper/metadata/transaction-metadata open_transaction_id, device_hash,
 *                                               device_id
 *     image/devicemapper/layerdb/sha256/<chainID>/{cache-id,diff,parent,size}
 *                                               committed image layers
 *     devicemapper/thinsim-layers.json           thinsim's own index (key, kind,
 *                                               parent); not a Docker file
 *   The pool directory itself (pool.json, data, metadata) plays the part of Docker's
 *   devicemapper/devicemapper/{data,metadata} loop files. JSON is written compactly
 *   with Go's field order, as encoding/json writes it.
 * - Every file is written atomically: a temporary file in the same directory, fsync,
 *   rename, fsync of the directory. A removal fsyncs the directory too.
 * - Docker's transaction protocol for creating and deleting devices over these records
 *   is in ./device-transactions.ts.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { crashPoint } from '../crash-points';
import { ThinError, ioError } from '../errors';

export const DOCKER_DIR = 'docker';
export const DEVICESET_META_FILE = 'deviceset-metadata';
export const TRANSACTION_META_FILE = 'transaction-metadata';
export const BASE_RECORD = 'base';
export const INDEX_FILE = 'thinsim-layers.json';
/** Device ids are 24 bits in dm-thin (and Docker wraps next_device_id there). */
export const MAX_DEVICE_ID = 0xffffff;

/** Docker's devInfo record (devicemapper/metadata/<hash>). */
export interface DevInfo {
  device_id: number;
  size: number;
  transaction_id: number;
  initialized: boolean;
  deleted: boolean;
}

/** Docker's DeviceSet as it marshals it (deviceset-metadata). */
export interface DeviceSetMetadata {
  next_device_id: number;
  BaseDeviceUUID: string;
  BaseDeviceFilesystem: string;
}

/** Docker's transaction record (transaction-metadata). */
export interface TransactionMetadata {
  open_transaction_id: number;
  device_hash: string;
  device_id: number;
}

export type LayerKind = 'active' | 'committed' | 'view';

/** One entry of thinsim's index: what Docker keeps in its layer store and containerd in its bolt db. */
export interface LayerRecord {
  name: string;
  kind: LayerKind;
  parent?: string;
  cacheId: string;
  chainId?: string;
  diffId?: string;
  created: string;
  /**
   * A scratch layer's owner (an image import's work in progress, a container's layers
   * while it is made or removed; scratch.ts): when that process is gone, the next
   * read-write open removes the layer, or keeps it when the path `until` (under
   * POOL/docker) exists, the work having reached its commit point.
   */
  owner?: { pid: number; start: string; until?: string };
  /**
   * Why the layer is faulty: a rollback could not remove it (containerd's devmapper
   * snapshotter has the same Faulty state). It is kept for inspection and removal only.
   */
  faulty?: string;
}

export interface LayerIndex {
  version: 1;
  layers: Record<string, LayerRecord>;
}

/** A committed image layer's layerdb directory. */
export interface LayerdbEntry {
  chainId: string;
  cacheId: string;
  diffId?: string;
  parent?: string;
  size?: number;
}

export interface DockerPaths {
  root: string;
  metadataDir: string;
  layerdb: string;
  index: string;
}

export function dockerPaths(poolDir: string): DockerPaths {
  const root = path.join(poolDir, DOCKER_DIR);
  return {
    root,
    metadataDir: path.join(root, 'devicemapper', 'metadata'),
    layerdb: path.join(root, 'image', 'devicemapper', 'layerdb', 'sha256'),
    index: path.join(root, 'devicemapper', INDEX_FILE),
  };
}

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
export const CACHE_ID_RE = /^[0-9a-f]{64}$/;

/** A fresh cache-id: 64 random hex digits, as Docker's layer store makes them. */
export function newCacheId(): string {
  return crypto.randomBytes(32).toString('hex');
}

export { writeAtomic, removeDurable } from '../durable';
import { writeAtomic, writeDirAtomic, removeDurable } from '../durable';

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError('read', file, e);
  }
}

/** The JSON object in `file`; undefined if there is no such file; E_PARSE if it is not a JSON object. */
export function readJson(file: string): Record<string, unknown> | undefined {
  const text = readText(file);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch { /* below */ }
  throw new ThinError('E_PARSE', `${file} is not a JSON object; it is damaged (restore it from a backup or remove the layer store)`, { file });
}

function field<T>(o: Record<string, unknown>, key: string, type: 'number' | 'string' | 'boolean', file: string, dflt?: T): T {
  const v = o[key];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== type || (type === 'number' && !Number.isSafeInteger(v as number))) {
    throw new ThinError('E_PARSE', `${file}: "${key}" must be a ${type}, found ${JSON.stringify(v)}`, { file, key });
  }
  return v as T;
}

// ------------------------------------------------------------------ the records

export class DockerRecords {
  readonly paths: DockerPaths;

  constructor(readonly poolDir: string, readonly readOnly = false) {
    this.paths = dockerPaths(poolDir);
    if (!readOnly) {
      fs.mkdirSync(this.paths.metadataDir, { recursive: true, mode: 0o700 });
      fs.mkdirSync(this.paths.layerdb, { recursive: true, mode: 0o700 });
    }
  }

  private guard(): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `the layer records of ${this.poolDir} are open read-only`);
  }

  /** devicemapper/metadata/<hash>; the base device (hash "") is "base", as Docker names it. */
  recordFile(hash: string): string {
    return path.join(this.paths.metadataDir, hash === '' ? BASE_RECORD : hash);
  }

  readDevInfo(hash: string): DevInfo | undefined {
    const file = this.recordFile(hash);
    const o = readJson(file);
    if (o === undefined) return undefined;
    return {
      device_id: field<number>(o, 'device_id', 'number', file),
      size: field<number>(o, 'size', 'number', file),
      transaction_id: field<number>(o, 'transaction_id', 'number', file),
      initialized: field<boolean>(o, 'initialized', 'boolean', file),
      deleted: field<boolean>(o, 'deleted', 'boolean', file, false),
    };
  }

  writeDevInfo(hash: string, d: DevInfo): void {
    this.guard();
    const { device_id, size, transaction_id, initialized, deleted } = d;
    writeAtomic(this.recordFile(hash), JSON.stringify({ device_id, size, transaction_id, initialized, deleted }));
  }

  removeDevInfo(hash: string): void {
    this.guard();
    removeDurable(this.recordFile(hash));
  }

  /** Every device record by hash ("" for base), skipping what Docker's walk skips. */
  listDevInfos(): Map<string, DevInfo> {
    const out = new Map<string, DevInfo>();
    let names: string[];
    try {
      names = fs.readdirSync(this.paths.metadataDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw ioError('list', this.paths.metadataDir, e);
    }
    for (const n of names.sort()) {
      if (n.startsWith('.') || n.endsWith('.migrated') || n === DEVICESET_META_FILE || n === TRANSACTION_META_FILE) continue;
      const hash = n === BASE_RECORD ? '' : n;
      const d = this.readDevInfo(hash);
      if (d) out.set(hash, d);
    }
    return out;
  }

  readDeviceSet(): DeviceSetMetadata {
    const file = path.join(this.paths.metadataDir, DEVICESET_META_FILE);
    const o = readJson(file);
    if (o === undefined) return { next_device_id: 0, BaseDeviceUUID: '', BaseDeviceFilesystem: '' };
    return {
      next_device_id: field<number>(o, 'next_device_id', 'number', file, 0),
      BaseDeviceUUID: field<string>(o, 'BaseDeviceUUID', 'string', file, ''),
      BaseDeviceFilesystem: field<string>(o, 'BaseDeviceFilesystem', 'string', file, ''),
    };
  }

  writeDeviceSet(m: DeviceSetMetadata): void {
    this.guard();
    const { next_device_id, BaseDeviceUUID, BaseDeviceFilesystem } = m;
    writeAtomic(path.join(this.paths.metadataDir, DEVICESET_META_FILE), JSON.stringify({ next_device_id, BaseDeviceUUID, BaseDeviceFilesystem }));
  }

  readTransaction(): TransactionMetadata | undefined {
    const file = path.join(this.paths.metadataDir, TRANSACTION_META_FILE);
    const o = readJson(file);
    if (o === undefined) return undefined;
    return {
      open_transaction_id: field<number>(o, 'open_transaction_id', 'number', file),
      device_hash: field<string>(o, 'device_hash', 'string', file),
      device_id: field<number>(o, 'device_id', 'number', file),
    };
  }

  writeTransaction(t: TransactionMetadata): void {
    this.guard();
    const { open_transaction_id, device_hash, device_id } = t;
    writeAtomic(path.join(this.paths.metadataDir, TRANSACTION_META_FILE), JSON.stringify({ open_transaction_id, device_hash, device_id }));
  }

  removeTransaction(): void {
    this.guard();
    removeDurable(path.join(this.paths.metadataDir, TRANSACTION_META_FILE));
  }

  readIndex(): LayerIndex {
    const file = this.paths.index;
    const o = readJson(file);
    if (o === undefined) return { version: 1, layers: {} };
    const layers = o.layers;
    if (o.version !== 1 || !layers || typeof layers !== 'object') {
      throw new ThinError('E_PARSE', `${file}: expected {"version":1,"layers":{...}}`, { file });
    }
    for (const [k, v] of Object.entries(layers as Record<string, LayerRecord>)) {
      if (!v || v.name !== k || !['active', 'committed', 'view'].includes(v.kind) || !CACHE_ID_RE.test(v.cacheId)) {
        throw new ThinError('E_PARSE', `${file}: layer "${k}" is malformed`, { file, layer: k });
      }
    }
    return { version: 1, layers: layers as Record<string, LayerRecord> };
  }

  writeIndex(idx: LayerIndex): void {
    this.guard();
    writeAtomic(this.paths.index, JSON.stringify(idx, null, 1) + '\n');
  }

  // ---- layerdb (committed image layers)

  layerdbDir(chainId: string): string {
    return path.join(this.paths.layerdb, chainId.replace(/^sha256:/, ''));
  }

  /** Write the layer's directory under a temporary name, then rename it into place. */
  writeLayerdb(e: LayerdbEntry): void {
    this.guard();
    const dir = this.layerdbDir(e.chainId);
    writeDirAtomic(dir, (tmp) => {
      writeAtomic(path.join(tmp, 'cache-id'), e.cacheId);
      if (e.diffId) writeAtomic(path.join(tmp, 'diff'), e.diffId);
      if (e.parent) writeAtomic(path.join(tmp, 'parent'), e.parent);
      if (e.size !== undefined) writeAtomic(path.join(tmp, 'size'), String(e.size));
      crashPoint('layers:layerdb:1');
    });
    crashPoint('layers:layerdb:2');
  }

  readLayerdb(chainId: string): LayerdbEntry | undefined {
    const dir = this.layerdbDir(chainId);
    const cacheId = readText(path.join(dir, 'cache-id'));
    if (cacheId === undefined) return undefined;
    const size = readText(path.join(dir, 'size'));
    return {
      chainId: `sha256:${path.basename(dir)}`, cacheId: cacheId.trim(),
      diffId: readText(path.join(dir, 'diff'))?.trim(), parent: readText(path.join(dir, 'parent'))?.trim(),
      size: size === undefined ? undefined : Number(size.trim()),
    };
  }

  listLayerdb(): string[] {
    try {
      return fs.readdirSync(this.paths.layerdb).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('list', this.paths.layerdb, e);
    }
  }

  removeLayerdb(chainId: string): void {
    this.guard();
    removeDurable(this.layerdbDir(chainId));
  }
}

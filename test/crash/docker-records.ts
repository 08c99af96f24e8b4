/**
 * The crash farm's checks of Docker's records against the pool (layers and snapshotter
 * scenarios), read from the files with plain fs and the pool opened read-only:
 * - every device record (devicemapper/metadata/<hash>, "base") names a device the pool
 *   holds, with the recorded size; no device of the pool lacks a record. As a crash left
 *   them (`inFlight`), the one exception is the open transaction's device (created but not
 *   yet recorded, or deleted but not yet unrecorded); after a reopen there is none, and
 *   no transaction is left open;
 * - every entry of thinsim's index names a device record (`strict`);
 * - layerdb is whole or absent: each directory under layerdb/sha256 is a ChainID holding
 *   cache-id (naming a device record), diff, size, and parent (the ChainID below) for every
 *   layer but the first, and its name is the ChainID computed from parent and diff
 *   (`chainIdModel`, written here from Docker's definition, not taken from src/); as a
 *   crash left it, a directory whose device was just deleted (a removal between its two
 *   steps) is allowed, since the reopen drops it;
 * - every image record (imagedb) hashes to its name and its whole chain is present, as
 *   committed layers with their layerdb directories;
 * - every container (layerdb/mounts) names layers that exist.
 * Temporary files of interrupted atomic writes (`.tmp-*` beside the device records) are
 * not records (Docker's walk skips dot files too): they are returned in `state.temporary`
 * for the caller to judge (a crash may leave them; the reopen must remove them), not
 * counted as failures here.
 * Returns the failures (empty: the records agree).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';

const HEX64 = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Docker's ChainID: ChainID(L1) = DiffID(L1); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainIdModel(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    out.push(out.length === 0 ? d : `sha256:${createHash('sha256').update(`${out[out.length - 1]} ${d}`).digest('hex')}`);
  }
  return out;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

interface Rec { device_id: number; size: number }

export interface DockerState {
  /** Device records by hash ("" for base). */
  records: Map<string, Rec>;
  /** Index entries: name -> {cacheId, kind, chainId, owner}. */
  layers: Map<string, { cacheId: string; kind: string; chainId?: string; parent?: string; owner?: unknown }>;
  /** layerdb ChainIDs (sha256:...). */
  layerdb: Set<string>;
  images: Array<{ id: string; diffIds: string[] }>;
  mounts: Array<{ containerId: string; mountId: string; initId: string }>;
  /** Temporary files of interrupted atomic writes beside the device records (Docker skips them too). */
  temporary: string[];
}

/**
 * Check the records of the pool in `dir` against its devices. `inFlight`: the records as a
 * crash left them (one transaction may be open); otherwise after a reopen (none may be).
 */
export function checkDockerRecords(dir: string, opts: { inFlight: boolean }): { fails: string[]; state: DockerState } {
  const fails: string[] = [];
  const root = path.join(dir, 'docker');
  const md = path.join(root, 'devicemapper', 'metadata');
  const state: DockerState = { records: new Map(), layers: new Map(), layerdb: new Set(), images: [], mounts: [], temporary: [] };
  const parse = (file: string): Record<string, unknown> | undefined => {
    const t = readText(file);
    if (t === undefined) return undefined;
    try {
      return JSON.parse(t) as Record<string, unknown>;
    } catch {
      fails.push(`${path.relative(dir, file)} is not whole JSON: ${JSON.stringify(t.slice(0, 80))}`);
      return undefined;
    }
  };
  for (const n of list(md)) {
    if (n.startsWith('.')) { state.temporary.push(n); continue; } // an interrupted atomic write's temporary file: never read as a record
    if (n === 'deviceset-metadata' || n === 'transaction-metadata') continue;
    const o = parse(path.join(md, n));
    if (!o) continue;
    if (!Number.isSafeInteger(o.device_id) || !Number.isSafeInteger(o.size)) { fails.push(`device record ${n}: device_id or size missing: ${JSON.stringify(o)}`); continue; }
    state.records.set(n === 'base' ? '' : n, { device_id: o.device_id as number, size: o.size as number });
  }
  const tx = parse(path.join(md, 'transaction-metadata')) as { open_transaction_id: number; device_hash: string; device_id: number } | undefined;
  let pool: Pool;
  try {
    pool = Pool.open(dir, { readOnly: true, commitInterval: 0 });
  } catch (e) {
    fails.push(`the pool does not open for the records check: ${(e as Error).message}`);
    return { fails, state };
  }
  try {
    const tid = pool.status().transactionId;
    const open = tx && tx.open_transaction_id > tid ? tx : undefined;
    if (open && !opts.inFlight) fails.push(`a transaction is left open after the reopen: ${JSON.stringify(open)} (pool transaction id ${tid})`);
    const devices = new Set(pool.devices());
    const recorded = new Set<number>();
    for (const [hash, r] of state.records) {
      recorded.add(r.device_id);
      const name = hash || 'base';
      if (!devices.has(r.device_id)) {
        if (open && open.device_hash === hash && open.device_id === r.device_id) continue; // deleted, not yet unrecorded
        fails.push(`device record ${name.slice(0, 12)} points at device ${r.device_id}, which the pool does not hold${open ? ` (open transaction: ${JSON.stringify(open)})` : ''}`);
      } else if (pool.deviceSize(r.device_id) !== r.size) {
        fails.push(`device record ${name.slice(0, 12)} says ${r.size} bytes; device ${r.device_id} has ${pool.deviceSize(r.device_id)}`);
      }
    }
    for (const id of devices) {
      if (recorded.has(id)) continue;
      if (open && open.device_id === id) continue; // created, not yet recorded: the reopen rolls it back
      fails.push(`device ${id} of the pool has no device record${open ? ` (open transaction: ${JSON.stringify(open)})` : ''}`);
    }
  } finally {
    void pool.close();
  }

  const idx = parse(path.join(root, 'devicemapper', 'thinsim-layers.json')) as { layers?: Record<string, { cacheId: string; kind: string; chainId?: string; parent?: string; owner?: unknown }> } | undefined;
  for (const [k, v] of Object.entries(idx?.layers ?? {})) {
    state.layers.set(k, v);
    if (!opts.inFlight && !state.records.has(v.cacheId)) fails.push(`index entry ${k.slice(0, 24)} names cache-id ${v.cacheId.slice(0, 12)}, which has no device record`);
  }

  const ldb = path.join(root, 'image', 'devicemapper', 'layerdb', 'sha256');
  for (const n of list(ldb)) {
    if (!HEX64.test(n)) {
      if (!opts.inFlight) fails.push(`layerdb holds ${n} after the reopen (a temporary directory left behind)`);
      continue;
    }
    const chainId = `sha256:${n}`;
    const read = (f: string) => readText(path.join(ldb, n, f))?.trim();
    const cacheId = read('cache-id');
    const diff = read('diff');
    const parent = read('parent');
    const size = read('size');
    const what = `layerdb ${n.slice(0, 12)}`;
    if (cacheId === undefined || diff === undefined || size === undefined) { fails.push(`${what} is not whole: cache-id ${cacheId !== undefined}, diff ${diff !== undefined}, size ${size !== undefined}`); continue; }
    state.layerdb.add(chainId);
    if (!HEX64.test(cacheId)) fails.push(`${what}: cache-id ${JSON.stringify(cacheId)} is not 64 hex digits`);
    else if (!opts.inFlight && !state.records.has(cacheId)) fails.push(`${what}: cache-id ${cacheId.slice(0, 12)} has no device record`);
    if (!DIGEST.test(diff)) fails.push(`${what}: diff ${JSON.stringify(diff)} is not a sha256 digest`);
    if (!/^\d+$/.test(size)) fails.push(`${what}: size ${JSON.stringify(size)} is not a number`);
    const want = parent === undefined ? diff : chainIdModel([parent, diff])[1];
    if (want !== chainId) fails.push(`${what}: named ${chainId}, but parent ${parent ?? '(none)'} and diff ${diff} give ChainID ${want}`);
  }
  for (const c of state.layerdb) {
    const parent = readText(path.join(ldb, c.slice(7), 'parent'))?.trim();
    if (!opts.inFlight && parent !== undefined && !state.layerdb.has(parent)) fails.push(`layerdb ${c.slice(7, 19)}: its parent ${parent.slice(7, 19)} has no layerdb directory`);
    const layer = [...state.layers.values()].find((l) => l.chainId === c);
    if (!opts.inFlight && (!layer || layer.kind !== 'committed')) fails.push(`layerdb ${c.slice(7, 19)} names no committed layer of the index`);
  }

  const content = path.join(root, 'image', 'devicemapper', 'imagedb', 'content', 'sha256');
  for (const n of list(content)) {
    if (!HEX64.test(n)) { if (!opts.inFlight) fails.push(`imagedb holds ${n} after the reopen`); continue; }
    const bytes = fs.readFileSync(path.join(content, n));
    if (createHash('sha256').update(bytes).digest('hex') !== n) { fails.push(`image record ${n.slice(0, 12)} does not hash to its name (not whole)`); continue; }
    const cfg = JSON.parse(bytes.toString('utf8')) as { rootfs: { diff_ids: string[] } };
    const diffIds = cfg.rootfs.diff_ids;
    state.images.push({ id: `sha256:${n}`, diffIds });
    for (const c of chainIdModel(diffIds)) {
      if (!state.layerdb.has(c)) fails.push(`image ${n.slice(0, 12)}: layer ${c.slice(7, 19)} of its chain has no layerdb directory`);
      else if (![...state.layers.values()].some((l) => l.chainId === c && l.kind === 'committed')) fails.push(`image ${n.slice(0, 12)}: layer ${c.slice(7, 19)} of its chain is no committed layer`);
    }
  }

  const mounts = path.join(root, 'image', 'devicemapper', 'layerdb', 'mounts');
  for (const id of list(mounts)) {
    const read = (f: string) => readText(path.join(mounts, id, f))?.trim();
    const mountId = read('mount-id');
    const initId = read('init-id');
    const parent = read('parent');
    if (mountId === undefined || initId === undefined || parent === undefined) {
      fails.push(`container ${id.slice(0, 12)}: layerdb/mounts is not whole (mount-id ${mountId !== undefined}, init-id ${initId !== undefined}, parent ${parent !== undefined})`);
      continue;
    }
    state.mounts.push({ containerId: id, mountId, initId });
    if (!opts.inFlight) {
      for (const l of [mountId, initId]) if (!state.layers.has(l)) fails.push(`container ${id.slice(0, 12)}: its layer ${l.slice(0, 12)} does not exist`);
      if (!state.layerdb.has(parent)) fails.push(`container ${id.slice(0, 12)}: its parent ${parent.slice(7, 19)} has no layerdb directory`);
    }
  }
  return { fails, state };
}

/**
 * Paths under the pool directory (relative to it) whose names are the temporary work of
 * a write: a file being written before its rename (`.tmp-*`), a directory built before its
 * rename (`*.tmp-PID`) or renamed aside before its removal (`*.rm-*`).
 */
export function interruptedUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; } // gone or unreadable: nothing to list
    for (const e of entries) {
      const full = path.join(d, e.name);
      if (e.name.startsWith('.tmp-') || /\.tmp-\d+$/.test(e.name) || /\.rm-\d+-/.test(e.name)) out.push(path.relative(dir, full));
      else if (e.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out;
}

/**
 * The layer store's reports and rules that need no store: the layer tree in order,
 * thin_ls's usage arithmetic per layer, thin_delta's ranges in bytes, and Docker's
 * min_free_space check (snapshotter.ts uses them).
 *
 * Contract: pure over what they are given (the records, the pool's sharing and delta
 * walks); orderLayers lists parents before children, siblings by creation time then
 * name, and leaves out index entries without a device record.
 */
import { ThinError } from '../errors';
import type { Pool } from '../pool/pool';
import type { DevInfo, DockerRecords, LayerKind, LayerRecord } from './records';

export interface LayerInfo {
  name: string;
  kind: LayerKind;
  parent?: string;
  chainId?: string;
  diffId?: string;
  cacheId: string;
  deviceId: number;
  size: number;
  created: string;
  /** Why the layer is faulty (a rollback could not remove it); absent for healthy layers. */
  faulty?: string;
}

export interface LayerUsage { name: string; mappedBytes: number; exclusiveBytes: number; sharedBytes: number }
export interface LayerDiffRange { kind: 'left_only' | 'right_only' | 'different'; offset: number; length: number }

export function toInfo(rec: LayerRecord, d: DevInfo): LayerInfo {
  const out: LayerInfo = { name: rec.name, kind: rec.kind, cacheId: rec.cacheId, deviceId: d.device_id, size: d.size, created: rec.created };
  if (rec.parent !== undefined) out.parent = rec.parent;
  if (rec.chainId) out.chainId = rec.chainId;
  if (rec.diffId) out.diffId = rec.diffId;
  if (rec.faulty) out.faulty = rec.faulty;
  return out;
}

/** Every layer, parents before children (siblings by creation time, then name). */
export function orderLayers(records: DockerRecords): LayerInfo[] {
  const layers = Object.values(records.readIndex().layers);
  const byParent = new Map<string | undefined, LayerRecord[]>();
  const names = new Set(layers.map((l) => l.name));
  for (const l of layers) {
    const p = l.parent !== undefined && names.has(l.parent) ? l.parent : undefined;
    if (!byParent.has(p)) byParent.set(p, []);
    byParent.get(p)!.push(l);
  }
  const out: LayerInfo[] = [];
  const walk = (p: string | undefined) => {
    const kids = (byParent.get(p) ?? []).sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : a.name < b.name ? -1 : 1));
    for (const k of kids) {
      const d = records.readDevInfo(k.cacheId);
      if (d) out.push(toInfo(k, d));
      walk(k.name);
    }
  };
  walk(undefined);
  return out;
}

/** Mapped, exclusive and shared bytes of each of `layers`, as thin_ls computes them. */
export function layerUsage(pool: Pool, layers: LayerInfo[]): LayerUsage[] {
  const rows = new Map(pool.sharing().map((r) => [r.devId, r]));
  const cb = pool.chunkBytes;
  return layers.map((l) => {
    const r = rows.get(l.deviceId);
    const mapped = r ? r.mappedBlocks : 0;
    const excl = r ? r.exclusiveBlocks : 0;
    return { name: l.name, mappedBytes: mapped * cb, exclusiveBytes: excl * cb, sharedBytes: (mapped - excl) * cb };
  });
}

/** Changed byte ranges from device `da` to device `db`, touching stretches of one kind merged as thin_delta prints them. */
export function layerDiff(pool: Pool, da: number, db: number): LayerDiffRange[] {
  const cb = pool.chunkBytes;
  const out: LayerDiffRange[] = [];
  for (const r of pool.delta(da, db)) {
    if (r.kind === 'same') continue;
    const last = out[out.length - 1];
    if (last && last.kind === r.kind && last.offset + last.length === r.begin * cb) last.length += r.length * cb;
    else out.push({ kind: r.kind, offset: r.begin * cb, length: r.length * cb });
  }
  return out;
}

/** Docker's poolHasFreeSpace: refuse a snapshot below `fraction` free of data or metadata. */
export function checkFreeSpace(pool: Pool, fraction: number): void {
  if (fraction === 0) return;
  const s = pool.status();
  const check = (used: number, total: number, what: string) => {
    const min = Math.max(1, Math.floor(total * fraction));
    if (total - used < min) {
      throw new ThinError('ENOSPC', `the thin pool has ${total - used} free ${what} blocks, less than the ${min} (${Math.round(fraction * 100)} %) required for a new snapshot; free space (remove layers), grow the pool (thinsim pool resize), or lower minFreeSpace (Docker's dm.min_free_space)`, { free: total - used, min });
    }
  };
  check(s.usedDataBlocks, s.totalDataBlocks, 'data');
  check(s.usedMetadataBlocks, s.totalMetadataBlocks, 'metadata');
}

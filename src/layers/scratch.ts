/**
 * Scratch layers: a process's work in progress on a layer store (an image import's
 * layers before they are committed; a container's two layers while `container create`
 * or `container rm` runs), so that a process killed mid-way leaves no half-made or
 * half-removed thing behind.
 *
 * Contract:
 * - A scratch layer's record carries its owner: the pid and that process's start time
 *   (/proc), so a reused pid is never taken for the owner. Optionally `until`: a path
 *   under the records root (POOL/docker) whose existence completes the owner's work
 *   (a container's layerdb/mounts record).
 * - `settleAbandoned` runs when a store opens read-write, the only writer (the pool
 *   lock). Every layer whose owner is gone is settled: kept, and its owner dropped,
 *   when its `until` path exists (the work reached its commit point); removed otherwise
 *   (with a discard, as `remove` does), children before parents.
 * - `ownerOf` is this process's owner record; `setOwners` sets or drops the owner of
 *   several layers in one index write (atomic, durable).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processStart } from '../mounts';
import type { DockerRecords, LayerRecord } from './records';

export type Owner = NonNullable<LayerRecord['owner']>;

/** This process as a layer's owner; `until`: the records-root-relative path that completes the work. */
export function ownerOf(until?: string): Owner {
  return { pid: process.pid, start: processStart(process.pid) ?? '', ...(until ? { until } : {}) };
}

/** Set (or with `owner` undefined, drop) the owner of each named layer, in one index write. */
export function setOwners(records: DockerRecords, names: string[], owner: Owner | undefined): void {
  const idx = records.readIndex();
  for (const n of names) {
    const rec = idx.layers[n];
    if (!rec) continue;
    if (owner) rec.owner = owner; else delete rec.owner;
  }
  records.writeIndex(idx);
}

export interface Settled { removed: string[]; adopted: string[] }

/**
 * Settle the layers whose owner is gone: adopt those whose `until` exists, remove the
 * rest, children first (`remove` refuses a layer with children).
 */
export async function settleAbandoned(records: DockerRecords, remove: (name: string) => Promise<void>): Promise<Settled> {
  const out: Settled = { removed: [], adopted: [] };
  const layers = Object.values(records.readIndex().layers);
  const gone = layers.filter((l) => l.owner && processStart(l.owner.pid) !== l.owner.start);
  const keep = gone.filter((l) => l.owner!.until && fs.existsSync(path.join(records.paths.root, l.owner!.until)));
  if (keep.length) {
    setOwners(records, keep.map((l) => l.name), undefined);
    out.adopted.push(...keep.map((l) => l.name));
  }
  let doomed = gone.filter((l) => !keep.includes(l));
  while (doomed.length) {
    const parents = new Set(Object.values(records.readIndex().layers).map((l) => l.parent));
    const leaves = doomed.filter((l) => !parents.has(l.name));
    // A doomed layer with a child that is not doomed stays: its child is someone's layer.
    if (!leaves.length) break;
    for (const l of leaves) {
      await remove(l.name);
      out.removed.push(l.name);
    }
    doomed = doomed.filter((l) => !leaves.includes(l));
  }
  return out;
}

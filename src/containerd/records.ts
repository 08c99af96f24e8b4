/**
 * What containerd keeps about a snapshot that the layer store does not: labels, the
 * times, and the usage frozen at commit. One JSON file beside the pool's other records.
 *
 * Contract:
 * - The file is POOL/docker/containerd/snapshots.json (inside the pool's docker root,
 *   beside Docker's devicemapper records); it is rewritten whole and atomically
 *   (writeAtomic: temporary file, fsync, rename, fsync of the directory) on every change.
 * - The layer store's index is the truth about which snapshots exist. An entry here
 *   without a layer is dropped at open (a Prepare or Commit killed half way); a layer
 *   without an entry here reads as a snapshot without labels. So no entry ever
 *   outlives its device, and the service writes an entry BEFORE the device exists
 *   (Prepare, Commit) and removes it AFTER the device is gone (Remove).
 * - Limits (checked before anything is written): a label's key and value together at
 *   most 4096 bytes (containerd's labels.Validate), at most 256 labels and 64 KiB of
 *   labels per snapshot (thinsim's, so a hostile request cannot bloat the file).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ThinError, ioError } from '../errors';
import { dockerPaths, writeAtomic } from '../layers/records';

export interface SnapshotUsage { size: number; inodes: number }

export interface SnapshotEntry {
  labels: Record<string, string>;
  created: string;
  updated: string;
  /** Frozen at commit (committed snapshots only). */
  usage?: SnapshotUsage;
}

export interface SnapshotFile { version: 1; snapshots: Record<string, SnapshotEntry> }

export const MAX_LABEL_BYTES = 4096;
export const MAX_LABELS = 256;
export const MAX_LABELS_TOTAL = 64 * 1024;

/** containerd's rule plus thinsim's bounds; E_INVALID naming the label. */
export function checkLabels(labels: Record<string, string>): void {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) {
    throw new ThinError('E_INVALID', `${entries.length} labels on one snapshot; at most ${MAX_LABELS} are kept: drop some`, { labels: entries.length });
  }
  let total = 0;
  for (const [k, v] of entries) {
    const n = Buffer.byteLength(k) + Buffer.byteLength(v);
    total += n;
    if (k === '') throw new ThinError('E_INVALID', 'a label key is empty: name every label');
    if (n > MAX_LABEL_BYTES) {
      throw new ThinError('E_INVALID', `label ${JSON.stringify(k.slice(0, 64))}${k.length > 64 ? '...' : ''}: key and value are ${n} bytes, more than containerd's maximum of ${MAX_LABEL_BYTES}`, { bytes: n });
    }
  }
  if (total > MAX_LABELS_TOTAL) {
    throw new ThinError('E_INVALID', `the labels of one snapshot come to ${total} bytes, more than the ${MAX_LABELS_TOTAL} thinsim keeps; drop some`, { bytes: total });
  }
}

export class SnapshotRecords {
  readonly file: string;

  constructor(poolDir: string, readOnly = false) {
    const dir = path.join(dockerPaths(poolDir).root, 'containerd');
    this.file = path.join(dir, 'snapshots.json');
    if (!readOnly) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  read(): SnapshotFile {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, snapshots: {} };
      throw ioError('read', this.file, e);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch { /* below */ }
    const o = v as SnapshotFile | undefined;
    if (!o || o.version !== 1 || !o.snapshots || typeof o.snapshots !== 'object') {
      throw new ThinError('E_PARSE', `${this.file} is not {"version":1,"snapshots":{...}}; it is damaged (restore it from a backup, or remove it to lose the labels)`, { file: this.file });
    }
    for (const [k, e] of Object.entries(o.snapshots)) {
      if (!e || typeof e.labels !== 'object' || typeof e.created !== 'string' || typeof e.updated !== 'string') {
        throw new ThinError('E_PARSE', `${this.file}: snapshot ${JSON.stringify(k)} is malformed`, { file: this.file });
      }
    }
    return o;
  }

  write(f: SnapshotFile): void {
    writeAtomic(this.file, JSON.stringify(f) + '\n');
  }

  /** Read, change, write. */
  update(fn: (f: SnapshotFile) => void): void {
    const f = this.read();
    fn(f);
    this.write(f);
  }

  /** Drop entries whose snapshot the layer store does not have; returns their names. */
  reconcile(existing: ReadonlySet<string>): string[] {
    const f = this.read();
    const dropped = Object.keys(f.snapshots).filter((k) => !existing.has(k));
    if (dropped.length === 0) return dropped;
    for (const k of dropped) delete f.snapshots[k];
    this.write(f);
    return dropped;
  }
}

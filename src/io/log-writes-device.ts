/**
 * A write-logging device in the spirit of dm-log-writes, for power-loss replay: it
 * passes every call to an inner device and records each completed write and sync, in
 * one order shared by all the devices of a `WriteLog` (a pool's metadata and data).
 *
 * Contract:
 * - `WriteLog.wrap(inner, name)` returns a BlockDevice that behaves exactly as `inner`
 *   and appends to the log when a write or sync completes (a failed one is not logged).
 *   The log also takes `mark(label)` entries from the caller; `length` is a position.
 * - `WriteLog.crashImages(base, point, policy, rng)` rebuilds what each device would hold
 *   after a power cut once the first `point` log entries had happened: every write of a
 *   device before its last sync inside the prefix is there, in order; each write after
 *   that sync is, as the policy says, dropped, kept, or (`random`) kept with probability
 *   1/2, applied in a shuffled order, and torn (only some of its 512-byte sectors
 *   applied) with probability 1/4. `base` is each device's image when logging started.
 * - Nothing here knows about pools or dm-thin; the crash farm (test/crash) decides what
 *   must survive.
 */
import type { BlockDevice } from './block-device';

export const SECTOR = 512;

export type LogEntry =
  | { kind: 'write'; dev: string; offset: number; data: Uint8Array }
  | { kind: 'sync'; dev: string }
  | { kind: 'mark'; label: string };

export type TailPolicy = 'drop' | 'keep' | 'random';

export class WriteLog {
  readonly entries: LogEntry[] = [];

  get length(): number {
    return this.entries.length;
  }

  mark(label: string): void {
    this.entries.push({ kind: 'mark', label });
  }

  /** Positions just after each sync of `dev` (or of any device). */
  syncPoints(dev?: string): number[] {
    const out: number[] = [];
    this.entries.forEach((e, i) => { if (e.kind === 'sync' && (dev === undefined || e.dev === dev)) out.push(i + 1); });
    return out;
  }

  wrap(inner: BlockDevice, name: string): BlockDevice {
    return new LoggedDevice(inner, name, this);
  }

  /** Device images after a power cut at `point` (see the contract). `rng()` returns [0, 1). */
  crashImages(base: Record<string, Uint8Array>, point: number, policy: TailPolicy, rng: () => number): Record<string, Uint8Array> {
    const out: Record<string, Uint8Array> = {};
    for (const [dev, image] of Object.entries(base)) {
      const img = Uint8Array.from(image);
      let lastSync = -1;
      for (let i = 0; i < point; i++) {
        const e = this.entries[i];
        if (e.kind === 'sync' && e.dev === dev) lastSync = i;
      }
      const tail: Array<{ offset: number; data: Uint8Array }> = [];
      for (let i = 0; i < point; i++) {
        const e = this.entries[i];
        if (e.kind !== 'write' || e.dev !== dev) continue;
        if (i < lastSync) apply(img, e.offset, e.data);
        else tail.push(e);
      }
      if (policy === 'keep') for (const w of tail) apply(img, w.offset, w.data);
      if (policy === 'random') {
        const kept = tail.filter(() => rng() < 0.5);
        for (let i = kept.length - 1; i > 0; i--) {
          const j = Math.floor(rng() * (i + 1));
          [kept[i], kept[j]] = [kept[j], kept[i]];
        }
        for (const w of kept) {
          if (rng() >= 0.25 || w.data.length <= SECTOR) {
            apply(img, w.offset, w.data);
            continue;
          }
          // Torn: only some whole sectors of the write reach the medium.
          for (let s = 0; s < w.data.length; s += SECTOR) {
            if (rng() < 0.5) apply(img, w.offset + s, w.data.subarray(s, Math.min(w.data.length, s + SECTOR)));
          }
        }
      }
      out[dev] = img;
    }
    return out;
  }
}

function apply(img: Uint8Array, offset: number, data: Uint8Array): void {
  img.set(data.subarray(0, Math.max(0, Math.min(data.length, img.length - offset))), offset);
}

class LoggedDevice implements BlockDevice {
  readonly readOnly: boolean;
  constructor(private readonly inner: BlockDevice, readonly name: string, private readonly log: WriteLog) {
    this.readOnly = inner.readOnly;
  }

  size(): number { return this.inner.size(); }
  read(buf: Uint8Array, offset: number): void { this.inner.read(buf, offset); }
  readAsync(buf: Uint8Array, offset: number): Promise<void> { return this.inner.readAsync(buf, offset); }

  write(buf: Uint8Array, offset: number): void {
    this.writev([buf], offset);
  }

  writev(bufs: readonly Uint8Array[], offset: number): void {
    this.inner.writev(bufs, offset);
    this.record(bufs, offset);
  }

  async writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void> {
    const copy = bufs.map((b) => Uint8Array.from(b)); // the caller may reuse its buffers once we settle
    await this.inner.writevAsync(bufs, offset);
    this.record(copy, offset);
  }

  sync(): void {
    this.inner.sync();
    this.log.entries.push({ kind: 'sync', dev: this.name });
  }

  async syncAsync(): Promise<void> {
    await this.inner.syncAsync();
    this.log.entries.push({ kind: 'sync', dev: this.name });
  }

  grow(bytes: number): void { this.inner.grow(bytes); }
  close(): void { this.inner.close(); }

  private record(bufs: readonly Uint8Array[], offset: number): void {
    let at = offset;
    for (const b of bufs) {
      this.log.entries.push({ kind: 'write', dev: this.name, offset: at, data: Uint8Array.from(b) });
      at += b.length;
    }
  }
}

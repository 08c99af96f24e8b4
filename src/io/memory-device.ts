/**
 * An in-memory BlockDevice for tests, with fault injection and crash images.
 *
 * Contract:
 * - It tracks what is durable: `crashImage()` returns the bytes a power cut would
 *   leave, i.e. everything synced plus an arbitrary (seeded) subset of the writes made
 *   since the last sync.
 * - Faults (`faults`) fail reads, writes or syncs with E_IO (details.errno 'EIO'), as a
 *   failing disk would. A failed sync behaves as Linux's writeback does ("fsyncgate"):
 *   the writes made since the last good sync are dropped from what is durable and
 *   forgotten, so a later sync that succeeds does not make them durable. The device's
 *   current contents (what reads return) keep them, as the page cache does until the
 *   pages are evicted.
 * - The async calls settle on a later turn (or after `faults.asyncDelayMs`), as a real
 *   device's would; `inflight` counts the ones not yet settled.
 */
import { ThinError } from '../errors';
import type { BlockDevice } from './block-device';

export interface MemoryFaults {
  /** Throw E_IO on the Nth write from now (1 = the next write). */
  failWriteAt?: number;
  /** Throw E_IO on every read of this byte offset range [start, end). */
  failReadRange?: [number, number];
  /** Throw E_IO on every write that touches this byte offset range [start, end). */
  failWriteRange?: [number, number];
  /** Throw E_IO on the Nth sync from now (1 = the next sync); unsynced writes are then lost. */
  failSyncAt?: number;
  /** Throw E_IO on every sync from now on. */
  failSyncs?: boolean;
  /**
   * Async reads, writes and syncs that succeed settle this many ms after they were issued
   * (default: the next turn); injected failures settle on the next turn (a failing disk
   * answers at once, a healthy one takes its time).
   */
  asyncDelayMs?: number;
}

export class MemoryDevice implements BlockDevice {
  readonly name: string;
  readOnly = false;
  faults: MemoryFaults = {};
  writes = 0;
  syncs = 0;
  /** Syncs that failed (injected). */
  failedSyncs = 0;
  /** Async calls issued and not yet settled. */
  inflight = 0;
  private bytes: Uint8Array;
  private unsynced: Array<{ offset: number; data: Uint8Array }> = [];
  private durable: Uint8Array;

  constructor(size: number, name = 'memory') {
    this.name = name;
    this.bytes = new Uint8Array(size);
    this.durable = new Uint8Array(size);
  }

  static from(image: Uint8Array, name = 'memory'): MemoryDevice {
    const d = new MemoryDevice(image.length, name);
    d.bytes.set(image);
    d.durable.set(image);
    return d;
  }

  size(): number { return this.bytes.length; }

  read(buf: Uint8Array, offset: number): void {
    if (offset + buf.length > this.bytes.length) {
      throw new ThinError('E_IO', `short read from ${this.name}: wanted ${buf.length} bytes at offset ${offset}, device ends at ${this.bytes.length}`, { offset });
    }
    if (overlaps(this.faults.failReadRange, offset, buf.length)) {
      throw new ThinError('E_IO', `injected read error on ${this.name} at offset ${offset}`, { offset, errno: 'EIO' });
    }
    buf.set(this.bytes.subarray(offset, offset + buf.length));
  }

  write(buf: Uint8Array, offset: number): void {
    this.writev([buf], offset);
  }

  /** One call for fault injection; each buffer is its own unsynced write for crash images. */
  writev(bufs: readonly Uint8Array[], offset: number): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `${this.name} is read-only`);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    if (this.faults.failWriteAt !== undefined && --this.faults.failWriteAt <= 0) {
      this.faults.failWriteAt = undefined;
      throw new ThinError('E_IO', `injected write error on ${this.name} at offset ${offset}`, { offset, errno: 'EIO' });
    }
    if (overlaps(this.faults.failWriteRange, offset, total)) {
      throw new ThinError('E_IO', `injected write error on ${this.name} at offset ${offset}`, { offset, errno: 'EIO' });
    }
    if (offset + total > this.bytes.length) {
      throw new ThinError('E_IO', `write past the end of ${this.name}: ${total} bytes at offset ${offset}, size ${this.bytes.length}`, { offset });
    }
    this.writes++;
    let at = offset;
    for (const b of bufs) {
      this.bytes.set(b, at);
      this.unsynced.push({ offset: at, data: Uint8Array.from(b) });
      at += b.length;
    }
  }

  readAsync(buf: Uint8Array, offset: number): Promise<void> {
    return this.later(overlaps(this.faults.failReadRange, offset, buf.length), () => this.read(buf, offset));
  }

  writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void> {
    const f = this.faults;
    const fails = f.failWriteAt === 1 || overlaps(f.failWriteRange, offset, bufs.reduce((n, b) => n + b.length, 0));
    return this.later(fails, () => this.writev(bufs, offset));
  }

  syncAsync(): Promise<void> {
    return this.later(!!this.faults.failSyncs || this.faults.failSyncAt === 1, () => this.sync());
  }

  sync(): void {
    this.syncs++;
    const f = this.faults;
    const failNow = f.failSyncs || (f.failSyncAt !== undefined && --f.failSyncAt <= 0);
    if (failNow) {
      if (!f.failSyncs) f.failSyncAt = undefined;
      this.failedSyncs++;
      // The dirty pages were "written back" and failed: Linux marks them clean, so they
      // are neither durable nor written again by a later sync.
      this.unsynced = [];
      throw new ThinError('E_IO', `injected sync error on ${this.name}: Input/output error`, { errno: 'EIO' });
    }
    for (const w of this.unsynced) this.durable.set(w.data, w.offset);
    this.unsynced = [];
  }

  grow(bytes: number): void {
    if (bytes <= this.bytes.length) return;
    const grow = (a: Uint8Array) => { const n = new Uint8Array(bytes); n.set(a); return n; };
    this.bytes = grow(this.bytes);
    this.durable = grow(this.durable);
  }

  close(): void { /* nothing to release */ }

  /** Current contents (including unsynced writes). */
  image(): Uint8Array { return Uint8Array.from(this.bytes); }

  /** What a power cut would leave of the synced writes only (no unsynced write kept). */
  durableImage(): Uint8Array { return Uint8Array.from(this.durable); }

  /**
   * What survives a power cut now: durable bytes plus each unsynced write kept
   * with probability 1/2 (deterministic in `seed`), applied in a shuffled order.
   */
  crashImage(seed: number): Uint8Array {
    const out = Uint8Array.from(this.durable);
    let s = seed >>> 0 || 1;
    const rnd = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
    const kept = this.unsynced.filter(() => rnd() < 0.5);
    for (let i = kept.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [kept[i], kept[j]] = [kept[j], kept[i]]; }
    for (const w of kept) out.set(w.data, w.offset);
    return out;
  }

  /** Run `op` as an async call does: on the next turn if it `fails`, else after `asyncDelayMs`. */
  private async later(fails: boolean, op: () => void): Promise<void> {
    this.inflight++;
    try {
      const ms = fails ? 0 : this.faults.asyncDelayMs;
      await new Promise<void>((resolve) => (ms ? setTimeout(resolve, ms) : setImmediate(resolve)));
      op();
    } finally {
      this.inflight--;
    }
  }
}

function overlaps(range: [number, number] | undefined, offset: number, length: number): boolean {
  return !!range && offset < range[1] && offset + length > range[0];
}

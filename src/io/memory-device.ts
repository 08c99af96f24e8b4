import { ThinError } from '../errors';
import type { BlockDevice } from './block-device';

export interface MemoryFaults {
  /** Throw E_IO on the Nth write from now (1 = the next write). */
  failWriteAt?: number;
  /** Throw E_IO on every read of this byte offset range [start, end). */
  failReadRange?: [number, number];
}

/**
 * An in-memory device for tests. It tracks what is durable: `crashImage()`
 * returns the bytes a power cut would leave, i.e. everything synced plus an
 * arbitrary (seeded) subset of the writes made since the last sync.
 */
export class MemoryDevice implements BlockDevice {
  readonly name: string;
  readOnly = false;
  faults: MemoryFaults = {};
  writes = 0;
  syncs = 0;
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
    const f = this.faults.failReadRange;
    if (f && offset < f[1] && offset + buf.length > f[0]) {
      throw new ThinError('E_IO', `injected read error on ${this.name} at offset ${offset}`, { offset });
    }
    buf.set(this.bytes.subarray(offset, offset + buf.length));
  }

  write(buf: Uint8Array, offset: number): void {
    this.writev([buf], offset);
  }

  /** One call for fault injection; each buffer is its own unsynced write for crash images. */
  writev(bufs: readonly Uint8Array[], offset: number): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `${this.name} is read-only`);
    if (this.faults.failWriteAt !== undefined && --this.faults.failWriteAt <= 0) {
      this.faults.failWriteAt = undefined;
      throw new ThinError('E_IO', `injected write error on ${this.name} at offset ${offset}`, { offset });
    }
    const total = bufs.reduce((n, b) => n + b.length, 0);
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

  /** Settles on a later turn of the event loop, as a real device's would. */
  async writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.writev(bufs, offset);
  }

  async syncAsync(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.sync();
  }

  sync(): void {
    this.syncs++;
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
}

/**
 * Bytes received from a socket and not yet consumed, as the buffers they arrived in.
 * Consumers take exact lengths: one buffer (a view when it lies in one received
 * buffer, else a copy), a list of views (never a copy), or nothing (drop). Taking more
 * than `length` is the caller's bug.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(c: Buffer): void {
    this.chunks.push(c);
    this.bytes += c.length;
  }

  /** Everything queued, in order; the queue is left empty. */
  takeAll(): Buffer[] {
    const all = this.chunks;
    this.chunks = [];
    this.bytes = 0;
    return all;
  }

  /** The next n bytes as one buffer. */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      this.consume(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafeSlow(n);
    let at = 0;
    for (const v of this.takeList(n)) {
      v.copy(out, at);
      at += v.length;
    }
    return out;
  }

  /** The next n bytes as views of the received buffers. */
  takeList(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length, left);
      out.push(k === c.length ? c : c.subarray(0, k));
      this.consume(k);
      left -= k;
    }
    return out;
  }

  /** Discard the next n bytes. */
  drop(n: number): void {
    let left = n;
    while (left > 0) {
      const k = Math.min(this.chunks[0].length, left);
      this.consume(k);
      left -= k;
    }
  }

  /** Remove k bytes (at most the first buffer's length) from the front. */
  private consume(k: number): void {
    const c = this.chunks[0];
    if (k === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(k);
    this.bytes -= k;
  }
}

/**
 * Exact-length reads from a socket, with backpressure.
 *
 * Contract:
 * - `read(n)` resolves with exactly n bytes, in order; `skip(n)` consumes n bytes
 *   without keeping them. One read or skip at a time (the session is sequential).
 * - At most `highWater` bytes (or what the pending read needs, if more) are buffered:
 *   beyond that the socket is paused (SocketInput), so a client that sends faster than
 *   the session consumes is held back by TCP flow control, and memory stays bounded.
 * - A read fails with ReaderClosed when the peer closed (or the socket failed) before
 *   n bytes arrived, or when `cancel()` is called while it waits. It never hangs on a
 *   closed socket.
 */
import type { Socket } from 'net';
import { SocketInput } from './socket-input';

export class ReaderClosed extends Error {
  constructor(message: string, readonly partial: boolean) {
    super(message);
    this.name = 'ReaderClosed';
  }
}

export class SocketReader {
  private readonly input: SocketInput;
  private want = 0;
  private wake: (() => void) | undefined;
  private closedReason: string | undefined;
  private cancelled: string | undefined;

  private readonly onData = (c: Buffer) => {
    this.input.push(c, this.limit());
    this.poke();
  };
  private readonly onEnd = () => this.close('the client closed the connection');
  private readonly onClose = () => this.close('the connection closed');
  private readonly onError = (e: Error) => this.close(`connection error: ${e.message}`);

  constructor(private readonly socket: Socket, private readonly highWater = 256 * 1024) {
    this.input = new SocketInput(socket);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /**
   * Stop reading: the socket's events are no longer handled here, the socket is left
   * paused, and the bytes received but not consumed are returned, in order, for the
   * next owner, with whether the peer had already finished sending. No read may be
   * pending.
   */
  detach(): { chunks: Buffer[]; ended: boolean } {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onClose);
    this.socket.off('error', this.onError);
    this.input.hold();
    return { chunks: this.input.queue.takeAll(), ended: this.closedReason !== undefined };
  }

  /** Bytes buffered before the socket is paused: the high-water mark, or what a pending read needs. */
  private limit(): number {
    return Math.max(this.highWater, this.want);
  }

  private get buffered(): number {
    return this.input.length;
  }

  async read(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    await this.fill(n, n);
    return this.take(n);
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.fill(1, left);
      const k = Math.min(left, this.buffered);
      this.drop(k);
      left -= k;
    }
  }

  /** Make every read that has to wait for the socket fail from now on. */
  cancel(reason: string): void {
    this.cancelled = reason;
    this.poke();
  }

  /** Wait until at least `min` bytes are buffered; `want` is how much the caller will consume. */
  private async fill(min: number, want: number): Promise<void> {
    while (this.buffered < min) {
      const gone = this.cancelled ?? this.closedReason;
      if (gone !== undefined) throw new ReaderClosed(gone, this.buffered > 0);
      this.want = want;
      this.input.relieve(this.limit());
      await new Promise<void>((r) => { this.wake = r; });
    }
    this.want = 0;
  }

  private take(n: number): Buffer {
    const out = this.input.queue.take(n);
    this.input.relieve(this.highWater);
    return out;
  }

  private drop(n: number): void {
    this.input.queue.drop(n);
    this.input.relieve(this.highWater);
  }

  private close(reason: string): void {
    this.closedReason ??= reason;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

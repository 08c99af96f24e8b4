/**
 * Received bytes of one socket with backpressure: the one place the NBD server pauses
 * and resumes a socket for what it has buffered (the handshake's SocketReader and the
 * transmission phase both read through it).
 *
 * Contract: `push` queues received bytes and pauses the socket once `limit` or more wait
 * unconsumed; `relieve(limit)` resumes it once fewer than `limit` wait. The owner says
 * what the limit is at each call (a high-water mark, or more while a request's payload
 * must be gathered whole). Consumers take bytes from `queue`. While paused, TCP flow
 * control holds the client back, so memory stays bounded.
 */
import type { Socket } from 'net';
import { ByteQueue } from './byte-queue';

export class SocketInput {
  readonly queue = new ByteQueue();
  private paused: boolean;

  /** `paused`: whether the socket is paused now (a handed-over socket is). */
  constructor(private readonly socket: Socket, paused = false) {
    this.paused = paused;
  }

  get length(): number {
    return this.queue.length;
  }

  /** Queue received bytes; pause the socket once `limit` or more wait. */
  push(c: Buffer, limit: number): void {
    this.queue.push(c);
    if (!this.paused && this.queue.length >= limit) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** Resume the socket if it is paused and fewer than `limit` bytes wait. */
  relieve(limit: number): void {
    if (this.paused && this.queue.length < limit) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Pause the socket whatever is queued (handing it to another reader). */
  hold(): void {
    this.paused = true;
    this.socket.pause();
  }
}

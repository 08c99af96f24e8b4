/**
 * The transmission phase of one NBD connection: requests in, replies out.
 *
 * Contract:
 * - Requests are parsed from the socket's bytes as they arrive, in order, and run
 *   concurrently; replies go out as each finishes (any order), with the client's cookie
 *   echoed byte for byte. Replies finished in the same event-loop turn leave in one
 *   socket write.
 * - At most `maxInflightRequests` requests and `maxInflightBytes` of payload and reply
 *   data are held; a request counts from its header until its reply has been handed to
 *   the kernel, and a WRITE's bytes are reserved before its payload is taken. At a cap,
 *   parsing stops; once more than `readHighWater` bytes (or what the pending request
 *   needs) wait unparsed, the socket is paused (SocketInput) and the kernel pushes back
 *   on the client.
 *   A client that never reads its replies therefore costs bounded memory.
 * - A bad request magic, or a connection that ends inside a request, ends the session
 *   (the stream cannot be resynchronised); every other fault is an error reply and the
 *   session goes on. A WRITE longer than MAX_PAYLOAD is consumed unread and refused.
 * - A bug in this connection's handling (an exception from parsing, starting a request,
 *   or sending replies) is logged with its stack and closes this connection only; it
 *   never escapes into the socket's event handlers, where it would end the process.
 * - The session ends after DISC, `drain()` (server shutdown), a violation, or the end of
 *   the connection: no new request is parsed, the ones in flight finish and reply, then
 *   the socket is closed. `done` resolves once it is closed and every pool request this
 *   phase started has settled.
 */
import type { Socket } from 'net';
import { isThinError } from '../errors';
import { commandName, execute, failure, MAX_EXTENTS, MAX_PAYLOAD, type Outcome, type Target, validate } from './commands';
import * as P from './protocol';
import { SocketInput } from './socket-input';

export interface TransmissionLimits {
  /** Requests in flight per connection (received, reply not yet sent). */
  maxInflightRequests: number;
  /** Payload and reply bytes in flight per connection. Must be at least MAX_PAYLOAD. */
  maxInflightBytes: number;
  /** Received bytes buffered ahead of the parser before the socket is paused. */
  readHighWater: number;
}

export interface TransmissionContext {
  limits: TransmissionLimits;
  log(message: string): void;
}

/** Per-request overhead counted against maxInflightBytes (headers, bookkeeping). */
const REQUEST_OVERHEAD = 64;
/** Failed requests logged per connection. */
const ERRORS_LOGGED = 20;
/** Replies of one turn up to this many bytes are copied into one buffer; larger ones go out as a writev. */
const COALESCE_BYTES = 64 * 1024;
/** How long a closing connection may take to flush before it is destroyed. */
const CLOSE_TIMEOUT_MS = 2000;

/** Close our side once what was written has gone out; destroy it if that takes over CLOSE_TIMEOUT_MS. Resolves when closed. */
export function endSocket(socket: Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => { socket.destroy(); resolve(); }, CLOSE_TIMEOUT_MS);
    socket.end(() => { clearTimeout(t); socket.destroy(); resolve(); });
  });
}

/** A parsed request waiting for its byte budget or its payload. */
interface Held { req: P.Request; cost: number; reserved: boolean }

/** What a parsing step did: parsed or started something, or why it cannot go on. */
const enum Step { PROGRESS, NEED_BYTES, NEED_BUDGET }

export class Transmission {
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly input: SocketInput;
  private held: Held | undefined;
  /** Bytes of an oversized WRITE still to be consumed, and its request. */
  private skipLeft = 0;
  private skipReq: P.Request | undefined;
  /** Requests counted against the caps (header seen, reply not yet with the kernel). */
  private inflight = 0;
  private inflightBytes = 0;
  /** Pool requests started and not yet settled. */
  private running = 0;
  private stopped = false;
  /** The client finished sending (what is buffered is all there will be). */
  private eof = false;
  private closing = false;
  private closed = false;
  /** A bug was caught in this connection's handling: it is being closed. */
  private broken = false;
  private errorsLogged = 0;
  /** Replies finished this turn, waiting for the flush. */
  private out: Buffer[] = [];
  private outBytes = 0;
  private outRequests = 0;
  private outCost = 0;
  private flushScheduled = false;
  /** Releases of batches written but not yet confirmed by the socket. */
  private readonly sending = new Set<() => void>();

  constructor(private readonly socket: Socket, private readonly ctx: TransmissionContext, private readonly target: Target, readonly label: string, handover: { chunks: Buffer[]; ended: boolean }) {
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    // The handshake's reader left the socket paused.
    this.input = new SocketInput(socket, true);
    for (const c of handover.chunks) this.input.push(c, this.bufferLimit());
    this.eof = handover.ended;
    socket.on('data', (c: Buffer) => this.guard(() => {
      this.input.push(c, this.bufferLimit());
      this.pump();
    }));
    socket.on('end', () => this.guard(() => {
      this.eof = true;
      this.pump();
    }));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.guard(() => {
      this.closed = true;
      for (const release of [...this.sending]) release();
      this.stop(this.partial() ? 'the connection closed before every request it sent was read' : undefined);
      this.settle();
    }));
    if (socket.destroyed) {
      this.closed = true;
      this.stopped = true;
      this.resolveDone();
      return;
    }
    this.guard(() => this.pump());
  }

  /**
   * Run a step of this connection's handling; an exception is thinsim's bug: it is
   * logged, and this connection (only) is closed. Requests already running settle, and
   * `done` still waits for them.
   */
  private guard(step: () => void): void {
    try {
      step();
    } catch (e) {
      if (!this.broken) {
        this.broken = true;
        this.ctx.log(`${this.label}: internal error, closing this connection (the server goes on): ${(e as Error)?.stack ?? String(e)}`);
        this.stopped = true;
        this.socket.destroy();
      }
      if (this.running === 0) this.resolveDone();
    }
  }

  /** Server shutdown: parse nothing new, finish what is in flight, close. */
  drain(): void {
    this.stop();
  }

  // ---------------------------------------------------------------- requests in

  /** Unparsed bytes allowed before the socket is paused: the high-water mark, or a reserved WRITE's payload. */
  private bufferLimit(): number {
    const need = this.held?.reserved && this.held.req.type === P.Cmd.WRITE ? this.held.req.length : 0;
    return Math.max(this.ctx.limits.readHighWater, need);
  }

  /** Parse and start every request the buffered bytes and the caps allow. */
  private pump(): void {
    let step = Step.PROGRESS;
    try {
      while (!this.stopped && (step = this.step()) === Step.PROGRESS) { /* next request */ }
    } catch (e) {
      if (!(e instanceof Error && isThinError(e, 'E_PARSE'))) throw e;
      this.stop(`protocol violation, disconnecting: ${e.message}`);
    }
    if (this.stopped) return;
    if (this.eof && step === Step.NEED_BYTES) {
      // Everything the client sent is parsed; what is left is a request cut off.
      this.stop(this.partial() ? 'the client closed the connection in the middle of a request' : undefined);
      return;
    }
    this.input.relieve(this.bufferLimit());
  }

  /** One parsing step. */
  private step(): Step {
    const lim = this.ctx.limits;
    if (this.skipLeft > 0) {
      const k = Math.min(this.skipLeft, this.input.length);
      this.input.queue.drop(k);
      this.skipLeft -= k;
      if (this.skipLeft > 0) return Step.NEED_BYTES;
      const req = this.skipReq!;
      this.skipReq = undefined;
      this.begin(req, undefined, REQUEST_OVERHEAD);
      return Step.PROGRESS;
    }
    if (this.held) {
      const h = this.held;
      if (!h.reserved) {
        if (this.inflightBytes > 0 && this.inflightBytes + h.cost > lim.maxInflightBytes) return Step.NEED_BUDGET;
        this.inflightBytes += h.cost;
        h.reserved = true;
      }
      const payload = h.req.type === P.Cmd.WRITE ? h.req.length : 0;
      if (this.input.length < payload) return Step.NEED_BYTES;
      this.held = undefined;
      this.begin(h.req, payload > 0 ? this.input.queue.takeList(payload) : undefined, h.cost);
      return Step.PROGRESS;
    }
    if (this.inflight >= lim.maxInflightRequests || this.inflightBytes >= lim.maxInflightBytes) return Step.NEED_BUDGET;
    if (this.input.length < P.REQUEST_SIZE) return Step.NEED_BYTES;
    const req = P.parseRequest(this.input.queue.take(P.REQUEST_SIZE));
    if (req.type === P.Cmd.DISC) {
      this.stop();
      return Step.NEED_BYTES;
    }
    if (req.type === P.Cmd.WRITE && req.length > MAX_PAYLOAD) {
      // Too big to hold: consume it so the stream stays in step, then refuse it.
      this.skipLeft = req.length;
      this.skipReq = req;
      this.inflight++;
      this.inflightBytes += REQUEST_OVERHEAD;
      return Step.PROGRESS;
    }
    // What the request's payload or reply may hold: data, or a block status reply's extents.
    const data = req.type === P.Cmd.READ || req.type === P.Cmd.WRITE ? Math.min(req.length, MAX_PAYLOAD)
      : req.type === P.Cmd.BLOCK_STATUS ? 8 * MAX_EXTENTS : 0;
    this.inflight++;
    this.held = { req, cost: REQUEST_OVERHEAD + data, reserved: false };
    return Step.PROGRESS;
  }

  /** Start a request, already counted in `inflight` with its cost reserved. */
  private begin(req: P.Request, payload: Buffer[] | undefined, cost: number): void {
    const bad = validate(req, this.target);
    const work = bad ? Promise.resolve(bad) : execute(req, payload, this.target);
    this.running++; // counted once started: a throw above started nothing
    work.then(
      (o) => this.guard(() => this.finish(req, o, cost)),
      (e) => this.guard(() => this.finish(req, failure(e, commandName(req.type)), cost)),
    );
  }

  private finish(req: P.Request, o: Outcome, cost: number): void {
    this.running--;
    let reply: Buffer[];
    try {
      if (o.error !== 0) this.logError(`${commandName(req.type)} ${req.offset}+${req.length}: error ${o.error}: ${o.message ?? ''}`);
      reply = this.reply(req, o);
    } catch (e) {
      // A reply that cannot be built (thinsim's bug) still answers, and still releases the request.
      this.ctx.log(`${this.label}: ${commandName(req.type)}: building the reply failed: ${(e as Error)?.stack ?? String(e)}`);
      reply = this.reply(req, failure(e, commandName(req.type)));
    }
    this.queue(reply, cost);
    this.settle();
  }

  // ---------------------------------------------------------------- replies out

  private reply(req: P.Request, o: Outcome): Buffer[] {
    const c = req.cookie;
    if (!this.target.structured) {
      if (o.error !== 0) return [P.simpleReply(o.error, c)];
      return o.data && o.data.length > 0 ? [P.simpleReply(0, c), o.data] : [P.simpleReply(0, c)];
    }
    if (o.error !== 0) return [P.errorChunk(c, o.error, o.message)];
    if (req.type === P.Cmd.READ) {
      if (!o.data || o.data.length === 0) return [P.noneChunk(c)];
      return [P.offsetDataHeader(c, req.offset, o.data.length, true), o.data];
    }
    if (req.type === P.Cmd.BLOCK_STATUS) return [P.blockStatusChunk(c, this.target.allocationContext!, o.extents!, true)];
    return [P.simpleReply(0, c)];
  }

  /** Add a reply to this turn's batch; the batch is written once the turn's work is done. */
  private queue(bufs: Buffer[], cost: number): void {
    for (const b of bufs) {
      this.out.push(b);
      this.outBytes += b.length;
    }
    this.outRequests++;
    this.outCost += cost;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the promise jobs of this turn: replies finished together leave together.
      process.nextTick(() => this.guard(() => this.flush()));
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const bufs = this.out;
    const total = this.outBytes;
    const n = this.outRequests;
    const cost = this.outCost;
    this.out = [];
    this.outBytes = 0;
    this.outRequests = 0;
    this.outCost = 0;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.sending.delete(release);
      this.inflight -= n;
      this.inflightBytes -= cost;
      this.guard(() => {
        this.pump();
        this.settle();
      });
    };
    if (this.closed || this.socket.destroyed || !this.socket.writable) {
      release();
      return;
    }
    this.sending.add(release);
    if (bufs.length === 1) {
      this.socket.write(bufs[0], release);
    } else if (total <= COALESCE_BYTES) {
      this.socket.write(Buffer.concat(bufs, total), release);
    } else {
      this.socket.cork();
      for (let i = 0; i < bufs.length; i++) this.socket.write(bufs[i], i === bufs.length - 1 ? release : undefined);
      this.socket.uncork();
    }
  }

  // ---------------------------------------------------------------- the end

  /** Parse nothing more; `why` is logged (a violation or a cut-off request). */
  private stop(why?: string): void {
    if (why && !this.stopped) this.ctx.log(`${this.label}: ${why}`);
    this.stopped = true;
    // A request parsed but not started (waiting for budget or payload) is dropped unanswered.
    if (this.held) {
      this.inflight--;
      if (this.held.reserved) this.inflightBytes -= this.held.cost;
      this.held = undefined;
    }
    if (this.skipReq) {
      this.inflight--;
      this.inflightBytes -= REQUEST_OVERHEAD;
      this.skipReq = undefined;
      this.skipLeft = 0;
    }
    this.settle();
  }

  /** Close once stopped with nothing in flight; resolve `done` once closed and settled. */
  private settle(): void {
    if (this.closed) {
      if (this.running === 0) this.resolveDone();
      return;
    }
    if (!this.stopped || this.closing || this.inflight > 0 || this.flushScheduled) return;
    this.closing = true;
    void endSocket(this.socket);
  }

  /** A request was cut off: bytes of it were received, not all of them. */
  private partial(): boolean {
    return this.input.length > 0 || this.skipLeft > 0 || (this.held !== undefined && this.held.req.type === P.Cmd.WRITE);
  }

  private logError(message: string): void {
    this.errorsLogged++;
    if (this.errorsLogged <= ERRORS_LOGGED) this.ctx.log(`${this.label}: ${message}`);
    if (this.errorsLogged === ERRORS_LOGGED) this.ctx.log(`${this.label}: further failed requests on this connection are not logged`);
  }
}

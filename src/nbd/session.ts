/**
 * One NBD connection: fixed newstyle option haggling, then the transmission phase.
 *
 * Contract:
 * - Handshake: greeting, client flags (unknown bits drop the connection), then options
 *   one at a time until EXPORT_NAME or GO picks an export (or ABORT / a violation ends
 *   the session). Unknown options get NBD_REP_ERR_UNSUP; malformed ones ERR_INVALID;
 *   data over `maxOptionBytes` is skipped and answered ERR_TOO_BIG. The whole handshake
 *   must finish within `handshakeTimeoutMs` and `maxOptions` options.
 * - Transmission: requests are read in order and run concurrently; replies go out as
 *   each finishes (any order) with the client's cookie echoed byte for byte. At most
 *   `maxInflightRequests` requests and `maxInflightBytes` of payload and reply data per
 *   connection are held; a request counts until its reply has been handed to the
 *   kernel. At the cap the session stops reading, the socket is paused and TCP pushes
 *   back on the client, so a client that never reads replies costs bounded memory.
 * - A bad request magic or a truncated request ends the session (the stream cannot be
 *   resynchronised); everything else is an error reply and the session goes on.
 * - `done` resolves once the socket is closed and every pool request this session
 *   started has settled. `drain()` (server shutdown) stops reading new requests, lets
 *   the ones in flight finish and reply, then closes.
 */
import type { Socket } from 'net';
import type { Pool } from '../pool/pool';
import { isThinError } from '../errors';
import { commandName, execute, MAX_PAYLOAD, Outcome, Target, validate } from './commands';
import type { Export, ExportTable } from './exports';
import * as P from './protocol';
import { ReaderClosed, SocketReader } from './socket-reader';

export interface SessionLimits {
  /** Largest option data accepted during the handshake (bytes). */
  maxOptionBytes: number;
  /** Options one connection may send before choosing an export. */
  maxOptions: number;
  /** Time allowed from connect to entering transmission (ms). */
  handshakeTimeoutMs: number;
  /** Requests in flight per connection (received, reply not yet sent). */
  maxInflightRequests: number;
  /** Payload and reply bytes in flight per connection. Must be at least MAX_PAYLOAD. */
  maxInflightBytes: number;
  /** Received bytes buffered ahead of the parser before the socket is paused. */
  readHighWater: number;
}

export const DEFAULT_LIMITS: SessionLimits = {
  maxOptionBytes: 64 * 1024,
  maxOptions: 1024,
  handshakeTimeoutMs: 60_000,
  maxInflightRequests: 128,
  maxInflightBytes: 2 * MAX_PAYLOAD,
  readHighWater: 256 * 1024,
};

export interface SessionContext {
  pool: Pool;
  exports: ExportTable;
  limits: SessionLimits;
  /** Preferred block size to advertise (a power of two). */
  preferredBlockSize: number;
  log(message: string): void;
  shuttingDown(): boolean;
}

/** The id we give base:allocation in NBD_REP_META_CONTEXT. */
const ALLOCATION_CONTEXT_ID = 1;
/** Per-request overhead counted against maxInflightBytes (headers, bookkeeping). */
const REQUEST_OVERHEAD = 64;

/** Failed requests logged per connection. */
const ERRORS_LOGGED = 20;

class Violation extends Error {}

export class Session {
  readonly done: Promise<void>;
  private readonly reader: SocketReader;
  private phase: 'handshake' | 'transmission' | 'closing' = 'handshake';
  private structured = false;
  private noZeroes = false;
  /** Export (resolved name) for which base:allocation was selected, if it was. */
  private metaFor: string | undefined;
  private inflight = 0;
  private inflightBytes = 0;
  private readonly running = new Set<Promise<void>>();
  private wakeLoop: (() => void) | undefined;
  private waitingForHeader = false;
  private draining = false;
  private errorsLogged = 0;
  /** Sends not yet handed to the kernel; released when the socket closes. */
  private readonly sending = new Set<() => void>();

  constructor(private readonly socket: Socket, private readonly ctx: SessionContext, readonly label: string) {
    this.reader = new SocketReader(socket, ctx.limits.readHighWater);
    socket.on('error', () => undefined); // reported through the reader; never an unhandled 'error'
    socket.on('close', () => {
      for (const done of [...this.sending]) done();
      this.poke();
    });
    socket.setNoDelay?.(true);
    this.done = this.run();
  }

  get state(): string {
    return this.phase;
  }

  /** Server shutdown: finish what is in flight, read nothing new, close. */
  drain(): void {
    this.draining = true;
    if (this.phase === 'handshake') {
      this.socket.destroy();
      return;
    }
    if (this.waitingForHeader) this.reader.cancel('the server is shutting down');
    this.poke();
  }

  /** Drop the connection now (in-flight pool requests still settle before `done`). */
  destroy(): void {
    this.socket.destroy();
    this.reader.cancel('connection dropped');
    this.poke();
  }

  private async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.ctx.log(`${this.label}: handshake not finished in ${this.ctx.limits.handshakeTimeoutMs} ms; dropping the connection`);
      this.socket.destroy();
    }, this.ctx.limits.handshakeTimeoutMs);
    try {
      await this.send([P.greeting(P.HandshakeFlag.FIXED_NEWSTYLE | P.HandshakeFlag.NO_ZEROES)]);
      const exp = await this.negotiate();
      clearTimeout(timer);
      if (exp) await this.transmit(exp);
    } catch (e) {
      if (e instanceof ReaderClosed) {
        if (e.partial || this.phase === 'handshake') this.ctx.log(`${this.label}: ${e.message} in the middle of a ${this.phase === 'handshake' ? 'handshake' : 'request'}`);
      } else if (e instanceof Violation || isThinError(e, 'E_PARSE')) {
        this.ctx.log(`${this.label}: protocol violation, disconnecting: ${(e as Error).message}`);
      } else {
        this.ctx.log(`${this.label}: unexpected failure, disconnecting: ${(e as Error)?.stack ?? String(e)}`);
      }
    } finally {
      clearTimeout(timer);
      this.phase = 'closing';
      // Every pool request this connection started settles before the session is done.
      while (this.running.size > 0) await Promise.allSettled([...this.running]);
      await this.close();
    }
  }

  // ---------------------------------------------------------------- handshake

  /** Returns the export chosen by EXPORT_NAME or GO, or undefined after ABORT. */
  private async negotiate(): Promise<Export | undefined> {
    const flags = P.parseClientFlags(await this.reader.read(P.CLIENT_FLAGS_SIZE));
    if (flags & ~P.KNOWN_CLIENT_FLAGS) throw new Violation(`unknown client flags 0x${flags.toString(16)}`);
    this.noZeroes = (flags & P.ClientFlag.NO_ZEROES) !== 0;
    for (let n = 0; ; n++) {
      if (n >= this.ctx.limits.maxOptions) throw new Violation(`more than ${this.ctx.limits.maxOptions} options`);
      const h = P.parseOptionHeader(await this.reader.read(P.OPTION_HEADER_SIZE));
      if (h.length > this.ctx.limits.maxOptionBytes) {
        if (h.option === P.Opt.EXPORT_NAME) throw new Violation(`EXPORT_NAME with ${h.length} bytes of data`);
        await this.reader.skip(h.length);
        await this.optReply(h.option, P.Rep.ERR_TOO_BIG, `option data of ${h.length} bytes is more than ${this.ctx.limits.maxOptionBytes}`);
        continue;
      }
      const data = await this.reader.read(h.length);
      if (this.ctx.shuttingDown() && h.option !== P.Opt.ABORT) {
        if (h.option === P.Opt.EXPORT_NAME) throw new Violation('the server is shutting down');
        await this.optReply(h.option, P.Rep.ERR_SHUTDOWN, 'the server is shutting down');
        continue;
      }
      const chosen = await this.option(h.option, data);
      if (chosen === 'abort') return undefined;
      if (chosen) return chosen;
    }
  }

  private async option(option: number, data: Buffer): Promise<Export | 'abort' | undefined> {
    const { Opt, Rep } = P;
    switch (option) {
      case Opt.EXPORT_NAME: {
        const name = P.parseExportName(data);
        const exp = this.ctx.exports.lookup(name);
        if (!exp) throw new Violation(`EXPORT_NAME "${name}": no such export`);
        this.selectFor(exp);
        await this.send([P.exportNameReply(BigInt(exp.size), this.txFlags(exp), this.noZeroes)]);
        return exp;
      }
      case Opt.ABORT:
        await this.optReply(option, Rep.ACK);
        return 'abort';
      case Opt.LIST: {
        if (data.length !== 0) return this.optReply(option, Rep.ERR_INVALID, 'LIST takes no data');
        const replies = this.ctx.exports.list().map((e) => P.optionReply(option, Rep.SERVER, P.serverEntry(e.name, e.description)));
        await this.send([...replies, P.optionReply(option, Rep.ACK)]);
        return undefined;
      }
      case Opt.INFO:
      case Opt.GO: {
        let req: P.InfoRequest;
        try {
          req = P.parseInfoRequest(data);
        } catch (e) {
          return this.optReply(option, Rep.ERR_INVALID, (e as Error).message);
        }
        const exp = this.ctx.exports.lookup(req.name);
        if (!exp) return this.optReply(option, Rep.ERR_UNKNOWN, `no export named "${req.name}"; NBD_OPT_LIST shows them`);
        const infos = [P.infoExport(BigInt(exp.size), this.txFlags(exp)), P.infoBlockSize(1, this.ctx.preferredBlockSize, MAX_PAYLOAD)];
        if (req.infos.includes(P.Info.NAME)) infos.push(P.infoName(exp.name));
        if (req.infos.includes(P.Info.DESCRIPTION)) infos.push(P.infoDescription(exp.description));
        await this.send([...infos.map((i) => P.optionReply(option, Rep.INFO, i)), P.optionReply(option, Rep.ACK)]);
        if (option === Opt.INFO) return undefined;
        this.selectFor(exp);
        return exp;
      }
      case Opt.STRUCTURED_REPLY:
        if (data.length !== 0) return this.optReply(option, Rep.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        this.structured = true;
        return this.optReply(option, Rep.ACK);
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return this.optReply(option, Rep.ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private async metaContext(option: number, data: Buffer): Promise<undefined> {
    const { Rep } = P;
    const list = option === P.Opt.LIST_META_CONTEXT;
    if (!this.structured) return this.optReply(option, Rep.ERR_INVALID, 'negotiate structured replies first');
    let req: P.MetaContextRequest;
    try {
      req = P.parseMetaContextRequest(data);
    } catch (e) {
      return this.optReply(option, Rep.ERR_INVALID, (e as Error).message);
    }
    const exp = this.ctx.exports.lookup(req.name);
    if (!exp) return this.optReply(option, Rep.ERR_UNKNOWN, `no export named "${req.name}"`);
    // LIST with no query lists everything; "base:" lists the whole base namespace.
    const match = list
      ? req.queries.length === 0 || req.queries.some((q) => q === P.BASE_ALLOCATION || q === 'base:')
      : req.queries.includes(P.BASE_ALLOCATION);
    if (!list) this.metaFor = match ? exp.name : undefined;
    const replies = match ? [P.optionReply(option, Rep.META_CONTEXT, P.metaContextEntry(list ? 0 : ALLOCATION_CONTEXT_ID, P.BASE_ALLOCATION))] : [];
    await this.send([...replies, P.optionReply(option, Rep.ACK)]);
    return undefined;
  }

  /** Contexts selected for another export do not carry over to this one. */
  private selectFor(exp: Export): void {
    if (this.metaFor !== exp.name) this.metaFor = undefined;
  }

  private txFlags(exp: Export): number {
    const F = P.TxFlag;
    let f = F.HAS_FLAGS | F.SEND_FLUSH | F.SEND_FUA | F.CAN_MULTI_CONN;
    if (exp.readOnly) f |= F.READ_ONLY;
    else f |= F.SEND_TRIM | F.SEND_WRITE_ZEROES | F.SEND_FAST_ZERO;
    if (this.structured) f |= F.SEND_DF; // a read is always answered with one data chunk
    return f;
  }

  private async optReply(option: number, type: number, message?: string): Promise<undefined> {
    await this.send([message === undefined ? P.optionReply(option, type) : P.optionError(option, type, message)]);
    return undefined;
  }

  // ---------------------------------------------------------------- transmission

  private async transmit(exp: Export): Promise<void> {
    this.phase = 'transmission';
    const target: Target = {
      pool: this.ctx.pool, exp, structured: this.structured,
      allocationContext: this.structured && this.metaFor === exp.name ? ALLOCATION_CONTEXT_ID : undefined,
    };
    const lim = this.ctx.limits;
    for (;;) {
      await this.until(() => this.draining || this.socket.destroyed || (this.inflight < lim.maxInflightRequests && this.inflightBytes < lim.maxInflightBytes));
      // Requests still buffered from a client that is gone could never be answered.
      if (this.draining || this.socket.destroyed) return;
      let header: Buffer;
      this.waitingForHeader = true;
      try {
        header = await this.reader.read(P.REQUEST_SIZE);
      } catch (e) {
        if (e instanceof ReaderClosed && this.draining) return;
        throw e;
      } finally {
        this.waitingForHeader = false;
      }
      const req = P.parseRequest(header);
      if (req.type === P.Cmd.DISC) return;
      const cost = REQUEST_OVERHEAD + (req.type === P.Cmd.READ || req.type === P.Cmd.WRITE ? Math.min(req.length, MAX_PAYLOAD) : 0);
      let payload: Buffer | undefined;
      if (req.type === P.Cmd.WRITE) {
        if (req.length > MAX_PAYLOAD) {
          // Too big to hold: consume it so the stream stays in step, then refuse it.
          await this.reader.skip(req.length);
          this.start(req, undefined, target, REQUEST_OVERHEAD);
          continue;
        }
        await this.until(() => this.inflightBytes === 0 || this.inflightBytes + cost <= lim.maxInflightBytes);
        this.inflightBytes += cost; // reserved before the payload is read into memory
        try {
          payload = await this.reader.read(req.length);
        } catch (e) {
          this.inflightBytes -= cost;
          throw e;
        }
        this.start(req, payload, target, cost, true);
      } else {
        await this.until(() => this.inflightBytes === 0 || this.inflightBytes + cost <= lim.maxInflightBytes);
        this.start(req, undefined, target, cost);
      }
    }
  }

  private start(req: P.Request, payload: Buffer | undefined, target: Target, cost: number, reserved = false): void {
    this.inflight++;
    if (!reserved) this.inflightBytes += cost;
    const work = (async () => {
      const outcome = validate(req, target) ?? await execute(req, payload, target);
      if (outcome.error !== 0) this.logError(`${commandName(req.type)} ${req.offset}+${req.length}: error ${outcome.error}: ${outcome.message ?? ''}`);
      await this.send(this.reply(req, outcome, target));
    })();
    this.running.add(work);
    work.catch((e) => this.ctx.log(`${this.label}: reply failed: ${(e as Error).message}`)).finally(() => {
      this.running.delete(work);
      this.inflight--;
      this.inflightBytes -= cost;
      this.poke();
    });
  }

  private reply(req: P.Request, o: Outcome, t: Target): Buffer[] {
    const c = req.cookie;
    if (!this.structured) {
      if (o.error !== 0) return [P.simpleReply(o.error, c)];
      return o.data && o.data.length > 0 ? [P.simpleReply(0, c), o.data] : [P.simpleReply(0, c)];
    }
    if (o.error !== 0) return [P.errorChunk(c, o.error, o.message)];
    if (req.type === P.Cmd.READ) {
      if (!o.data || o.data.length === 0) return [P.noneChunk(c)];
      return [P.offsetDataHeader(c, req.offset, o.data.length, true), o.data];
    }
    if (req.type === P.Cmd.BLOCK_STATUS) return [P.blockStatusChunk(c, t.allocationContext!, o.extents!, true)];
    return [P.simpleReply(0, c)];
  }

  // ---------------------------------------------------------------- plumbing

  /** Failed requests are logged, but a client cannot flood the log: the first few per connection. */
  private logError(message: string): void {
    this.errorsLogged++;
    if (this.errorsLogged <= ERRORS_LOGGED) this.ctx.log(`${this.label}: ${message}`);
    if (this.errorsLogged === ERRORS_LOGGED) this.ctx.log(`${this.label}: further failed requests on this connection are not logged`);
  }

  /** Write buffers as one unit; resolves when the kernel has them (or the socket is gone). */
  private send(bufs: Buffer[]): Promise<void> {
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.sending.delete(done);
        resolve();
      };
      this.sending.add(done);
      this.socket.cork();
      for (let i = 0; i < bufs.length; i++) {
        if (i === bufs.length - 1) this.socket.write(bufs[i], done);
        else this.socket.write(bufs[i]);
      }
      this.socket.uncork();
    });
  }

  private async until(ready: () => boolean): Promise<void> {
    while (!ready()) await new Promise<void>((r) => { this.wakeLoop = r; });
  }

  private poke(): void {
    const w = this.wakeLoop;
    this.wakeLoop = undefined;
    w?.();
  }

  private async close(): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.socket.destroy(); resolve(); }, 2000);
      this.socket.end(() => { clearTimeout(t); this.socket.destroy(); resolve(); });
    });
  }
}

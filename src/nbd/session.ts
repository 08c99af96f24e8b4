/**
 * One NBD connection: fixed newstyle option haggling, then the transmission phase.
 *
 * Contract:
 * - Handshake: greeting, client flags (unknown bits drop the connection), then options
 *   one at a time until EXPORT_NAME or GO picks an export (or ABORT / a violation ends
 *   the session). Unknown options get NBD_REP_ERR_UNSUP; malformed ones ERR_INVALID;
 *   data over `maxOptionBytes` is skipped and answered ERR_TOO_BIG. The whole handshake
 *   must finish within `handshakeTimeoutMs` and `maxOptions` options.
 * - TLS (./tls.ts): with TLS on or required, NBD_OPT_STARTTLS is acknowledged and the
 *   connection continues encrypted; options negotiated before it are forgotten, as the
 *   protocol asks. Under `require`, every option but STARTTLS and ABORT before TLS gets
 *   NBD_REP_ERR_TLS_REQD, and EXPORT_NAME (which cannot carry an error) closes the
 *   connection. Without TLS, STARTTLS is unsupported; a second STARTTLS is invalid. A
 *   client that sends bytes after STARTTLS before the acknowledgement, or fails the TLS
 *   handshake, is disconnected.
 * - Transmission (./transmission.ts): requests run concurrently and reply in any order,
 *   with bounded requests and bytes in flight per connection.
 * - `done` resolves once the socket is closed and every pool request this session
 *   started has settled. `drain()` (server shutdown) drops a connection still in its
 *   handshake; in transmission it stops reading new requests, lets the ones in flight
 *   finish and reply, then closes.
 */
import type { Socket } from 'net';
import type { Pool } from '../pool/pool';
import { isThinError } from '../errors';
import { MAX_PAYLOAD, type Target } from './commands';
import type { Export, ExportTable } from './exports';
import * as P from './protocol';
import { ReaderClosed, SocketReader } from './socket-reader';
import { TlsFailed, upgrade, type TlsConfig } from './tls';
import { endSocket, Transmission, type TransmissionLimits } from './transmission';

export interface SessionLimits extends TransmissionLimits {
  /** Largest option data accepted during the handshake (bytes). */
  maxOptionBytes: number;
  /** Options one connection may send before choosing an export. */
  maxOptions: number;
  /** Time allowed from connect to entering transmission (ms). */
  handshakeTimeoutMs: number;
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
  /** TLS settings (undefined: TLS off, STARTTLS unsupported). */
  tls?: TlsConfig;
}

/** The id we give base:allocation in NBD_REP_META_CONTEXT. */
const ALLOCATION_CONTEXT_ID = 1;

class Violation extends Error {}

export class Session {
  readonly done: Promise<void>;
  private reader: SocketReader;
  /** The connection as accepted; `socket` becomes its TLS wrapper after STARTTLS. */
  private readonly raw: Socket;
  private encrypted = false;
  private phase: 'handshake' | 'transmission' | 'closing' = 'handshake';
  private structured = false;
  private noZeroes = false;
  /** Export (resolved name) for which base:allocation was selected, if it was. */
  private metaFor: string | undefined;
  private transmission: Transmission | undefined;
  private draining = false;
  /** Sends not yet handed to the kernel; released when the socket closes. */
  private readonly sending = new Set<() => void>();

  constructor(private socket: Socket, private readonly ctx: SessionContext, readonly label: string) {
    this.raw = socket;
    this.reader = new SocketReader(socket, ctx.limits.readHighWater);
    this.watch(socket);
    socket.setNoDelay?.(true);
    this.done = this.run();
  }

  private watch(socket: Socket): void {
    socket.on('error', () => undefined); // reported through the reader; never an unhandled 'error'
    socket.on('close', () => {
      for (const done of [...this.sending]) done();
    });
  }

  get state(): string {
    return this.phase;
  }

  /** Server shutdown: finish what is in flight, read nothing new, close. */
  drain(): void {
    this.draining = true;
    if (this.phase === 'handshake') {
      this.socket.destroy();
      this.raw.destroy();
      return;
    }
    this.transmission?.drain();
  }

  /** Drop the connection now (in-flight pool requests still settle before `done`). */
  destroy(): void {
    this.socket.destroy();
    this.raw.destroy();
    this.reader.cancel('connection dropped');
  }

  private async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.ctx.log(`${this.label}: handshake not finished in ${this.ctx.limits.handshakeTimeoutMs} ms; dropping the connection`);
      this.socket.destroy();
      this.raw.destroy();
    }, this.ctx.limits.handshakeTimeoutMs);
    try {
      await this.send([P.greeting(P.HandshakeFlag.FIXED_NEWSTYLE | P.HandshakeFlag.NO_ZEROES)]);
      const exp = await this.negotiate();
      clearTimeout(timer);
      if (exp) await this.transmit(exp);
    } catch (e) {
      if (e instanceof ReaderClosed) {
        if (e.partial || this.phase === 'handshake') this.ctx.log(`${this.label}: ${e.message} in the middle of a ${this.phase === 'handshake' ? 'handshake' : 'request'}`);
      } else if (e instanceof TlsFailed) {
        this.ctx.log(`${this.label}: ${e.message}`);
      } else if (e instanceof Violation || isThinError(e, 'E_PARSE')) {
        this.ctx.log(`${this.label}: protocol violation, disconnecting: ${(e as Error).message}`);
      } else {
        this.ctx.log(`${this.label}: unexpected failure, disconnecting: ${(e as Error)?.stack ?? String(e)}`);
      }
    } finally {
      clearTimeout(timer);
      this.phase = 'closing';
      await endSocket(this.socket);
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
      if (this.ctx.tls?.mode === 'require' && !this.encrypted && h.option !== P.Opt.STARTTLS && h.option !== P.Opt.ABORT) {
        if (h.option === P.Opt.EXPORT_NAME) throw new Violation('EXPORT_NAME before STARTTLS, and this server requires TLS (--tls require)');
        await this.optReply(h.option, P.Rep.ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first');
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
      case Opt.STARTTLS:
        if (this.ctx.tls) return this.startTls(this.ctx.tls, data);
        return this.optReply(option, Rep.ERR_UNSUP, 'TLS is off on this server (thinsim serve --tls on|require)');
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

  /** NBD_OPT_STARTTLS: acknowledge, then carry on over TLS with a fresh option state. */
  private async startTls(cfg: TlsConfig, data: Buffer): Promise<undefined> {
    const option = P.Opt.STARTTLS;
    if (this.encrypted) return this.optReply(option, P.Rep.ERR_INVALID, 'TLS is already on');
    if (data.length !== 0) return this.optReply(option, P.Rep.ERR_INVALID, 'STARTTLS takes no data');
    // Stop reading before the acknowledgement: what arrives after it is the TLS handshake,
    // left in the socket for the TLS layer.
    const early = this.reader.detach();
    if (early.chunks.length > 0 || early.ended) throw new Violation('bytes sent after NBD_OPT_STARTTLS before its acknowledgement');
    await this.send([P.optionReply(option, P.Rep.ACK)]);
    const secure = await upgrade(this.raw, cfg);
    this.socket = secure;
    this.encrypted = true;
    this.watch(secure);
    this.reader = new SocketReader(secure, this.ctx.limits.readHighWater);
    this.structured = false;
    this.metaFor = undefined;
    return undefined;
  }

  // ---------------------------------------------------------------- transmission

  private async transmit(exp: Export): Promise<void> {
    this.phase = 'transmission';
    const target: Target = {
      pool: this.ctx.pool, exp, structured: this.structured,
      allocationContext: this.structured && this.metaFor === exp.name ? ALLOCATION_CONTEXT_ID : undefined,
    };
    this.transmission = new Transmission(this.socket, this.ctx, target, this.label, this.reader.detach());
    if (this.draining) this.transmission.drain();
    await this.transmission.done;
  }

  // ---------------------------------------------------------------- plumbing

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
}

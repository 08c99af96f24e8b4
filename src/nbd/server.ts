/**
 * The NBD server: listen on TCP or a unix socket, hand each connection to a Session,
 * and shut down gracefully.
 *
 * Contract:
 * - `NbdServer.start(pool, opts)` serves thin devices of an open pool; `serve(dir, opts)`
 *   opens the pool read-write itself (taking its exclusive lock) and closes it on
 *   shutdown. Listening defaults to 127.0.0.1:10809; a non-loopback address without TLS
 *   is allowed but logged as a warning. A unix socket is created mode 0600 (owner only).
 * - TLS (`tls`: nbdkit's --tls off|on|require, --tls-psk, --tls-certificates) is loaded
 *   and checked before listening (./tls.ts); sessions upgrade on NBD_OPT_STARTTLS. With
 *   `require` the URI printed is nbds:// / nbds+unix://.
 * - Exports: the given (name, id) list, or every thin device under its decimal id.
 *   `readOnly` makes every export read-only (writes fail with EPERM).
 * - At most `maxConnections` connections at once; more are closed at accept.
 * - `shutdown()`: stop accepting, drop connections still negotiating, let every
 *   connection finish its in-flight requests and send their replies (up to
 *   `shutdownGraceMs`, then the stragglers are dropped), flush the pool (data sync +
 *   metadata commit) and, when the server opened the pool, close it, which releases
 *   the lock. Every write acknowledged to a client is durable once it resolves.
 * - A client can never take the server down: each session's failures stay inside it.
 */
import * as fs from 'fs';
import * as net from 'net';
import { ThinError } from '../errors';
import { Pool } from '../pool/pool';
import type { OpenOptions } from '../pool/pool';
import type { PassdownError } from '../pool/state';
import { MAX_PAYLOAD } from './commands';
import { ExportSpec, ExportTable } from './exports';
import { DEFAULT_LIMITS, Session, SessionLimits } from './session';
import { loadTls, type TlsConfig, type TlsOptions } from './tls';

export const DEFAULT_PORT = 10809;
export const DEFAULT_HOST = '127.0.0.1';

export type Endpoint = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface ServeOptions {
  /** "HOST:PORT", "[V6]:PORT", "HOST" or ":PORT" (default 127.0.0.1:10809). Ignored with `socket`. */
  listen?: string;
  /** Listen on this unix socket path instead of TCP. */
  socket?: string;
  readOnly?: boolean;
  /** Exports by name; default: every thin device under its id. */
  exports?: ExportSpec[];
  maxConnections?: number;
  limits?: Partial<SessionLimits>;
  /** How long shutdown waits for connections to finish their requests (ms). */
  shutdownGraceMs?: number;
  /** Where warnings and per-connection problems go (default: nowhere). */
  log?: (message: string) => void;
  /** Close the pool at the end of shutdown (serve() sets it: the server opened the pool). */
  closePool?: boolean;
  /** TLS, as nbdkit's options (default off). */
  tls?: TlsOptions;
}

export class NbdServer {
  readonly endpoint: Endpoint;
  readonly exports: ExportTable;
  /** Resolves when shutdown has finished. */
  readonly closed: Promise<void>;
  private readonly sessions = new Set<Session>();
  private stopping: Promise<void> | undefined;
  private finish!: () => void;
  private nextId = 1;

  private constructor(
    private readonly pool: Pool,
    private readonly server: net.Server,
    endpoint: Endpoint,
    exports: ExportTable,
    private readonly opts: ServeOptions & { log: (m: string) => void },
    readonly tls: TlsConfig | undefined,
  ) {
    this.endpoint = endpoint;
    this.exports = exports;
    this.closed = new Promise((r) => { this.finish = r; });
  }

  /** Serve thin devices of `pool`; shutdown flushes it, and closes it only with `closePool`. */
  static async start(pool: Pool, opts: ServeOptions = {}): Promise<NbdServer> {
    const log = opts.log ?? (() => undefined);
    const exports = new ExportTable(pool, opts.exports, !!opts.readOnly);
    const limits: SessionLimits = { ...DEFAULT_LIMITS, ...opts.limits };
    if (limits.maxInflightBytes < MAX_PAYLOAD) throw new ThinError('E_INVALID', `maxInflightBytes must be at least ${MAX_PAYLOAD}`);
    const tls = loadTls(opts.tls ?? {});
    const maxConnections = opts.maxConnections ?? 16;
    if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) throw new ThinError('E_INVALID', `--max-connections must be a whole number >= 1, got ${maxConnections}`);
    let endpoint: Endpoint;
    if (opts.socket !== undefined) {
      endpoint = { kind: 'unix', path: opts.socket };
      await removeStaleSocket(opts.socket);
    } else {
      const { host, port } = parseListen(opts.listen ?? `${DEFAULT_HOST}:${DEFAULT_PORT}`);
      if (!isLoopback(host) && !tls) log(`warning: listening on ${host}, which is not a loopback address, without TLS: anyone who can reach it can read and write these thin devices (use --tls require with --tls-psk or --tls-certificates)`);
      endpoint = { kind: 'tcp', host, port };
    }
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        const where = endpoint.kind === 'unix' ? endpoint.path : `${endpoint.host}:${endpoint.port}`;
        const inUse = e.code === 'EADDRINUSE';
        reject(new ThinError(inUse ? 'E_ADDR_IN_USE' : 'E_IO', `cannot listen on ${where}: ${e.message}${inUse ? '; stop the other server or choose another address (--listen HOST:PORT or --socket PATH)' : ''}`, { errno: e.code }));
      });
      if (endpoint.kind === 'unix') listenPrivate(server, endpoint.path, resolve);
      else server.listen(endpoint.port, endpoint.host, resolve);
    });
    if (endpoint.kind === 'unix') fs.chmodSync(endpoint.path, 0o600);
    if (endpoint.kind === 'tcp') endpoint = { ...endpoint, port: (server.address() as net.AddressInfo).port };
    const self = new NbdServer(pool, server, endpoint, exports, { ...opts, log, maxConnections }, tls);
    server.on('error', (e) => log(`listener error: ${e.message}`));
    server.on('connection', (socket) => self.accept(socket, limits, maxConnections));
    pool.on('low-water-mark', self.onLowWater);
    pool.on('mode', self.onMode);
    pool.on('passdown-error', self.onPassdownError);
    if (pool.mode === 'ro' || pool.mode === 'fail') log(`warning: the pool is in ${pool.mode} mode: ${pool.modeReason ?? ''}`);
    return self;
  }

  private readonly onLowWater = (e: { free: number; lowWaterMark: number }) =>
    this.opts.log(`warning: the pool crossed its low-water mark: ${e.free} free data blocks (mark ${e.lowWaterMark})`);

  private readonly onPassdownError = (e: PassdownError) => this.opts.log(`warning: ${e.message}`);

  /** The kernel's "switching pool to ... mode" line, with the reason. */
  private readonly onMode = (mode: string, why?: string) => {
    const words: Record<string, string> = { rw: 'write', ro: 'read-only', fail: 'failure', out_of_data_space: 'out-of-data-space' };
    this.opts.log(`switching pool to ${words[mode] ?? mode} mode${why && (mode === 'ro' || mode === 'fail') ? `: ${why}` : ''}`);
  };

  /** The URI a client uses for export `name` (default: the first export). */
  uri(name?: string): string {
    const n = encodeURIComponent(name ?? this.exports.list()[0]?.name ?? '');
    const e = this.endpoint;
    const scheme = this.tls?.mode === 'require' ? 'nbds' : 'nbd';
    if (e.kind === 'unix') return `${scheme}+unix:///${n}?socket=${encodeURIComponent(e.path).replace(/%2F/g, '/')}`;
    const host = e.host.includes(':') ? `[${e.host}]` : e.host;
    return `${scheme}://${host}:${e.port}/${n}`;
  }

  get connections(): number {
    return this.sessions.size;
  }

  /** Stop accepting, finish in-flight requests, flush; close the pool if the server opened it. Idempotent. */
  shutdown(): Promise<void> {
    this.stopping ??= this.stop();
    return this.stopping;
  }

  /** Drop every connection now (a second signal); shutdown still flushes what completed. */
  dropConnections(): void {
    for (const s of this.sessions) s.destroy();
  }

  private async stop(): Promise<void> {
    const listenerClosed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sessions) s.drain();
    const all = Promise.all([...this.sessions].map((s) => s.done));
    const grace = this.opts.shutdownGraceMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), grace); });
    if (await Promise.race([all, late]) === 'late') {
      this.opts.log(`shutdown: ${this.sessions.size} connection(s) still busy after ${grace} ms; dropping them`);
      this.dropConnections();
      await all;
    }
    clearTimeout(timer);
    await listenerClosed;
    this.pool.off('low-water-mark', this.onLowWater);
    this.pool.off('mode', this.onMode);
    this.pool.off('passdown-error', this.onPassdownError);
    try {
      if (this.opts.closePool) await this.pool.close();
      else await this.pool.flush();
    } finally {
      if (this.endpoint.kind === 'unix') {
        try { fs.unlinkSync(this.endpoint.path); } catch { /* gone */ }
      }
      this.finish();
    }
  }

  private accept(socket: net.Socket, limits: SessionLimits, maxConnections: number): void {
    const label = `connection ${this.nextId++}`;
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (this.sessions.size >= maxConnections) {
      this.opts.log(`${label}: refused, ${maxConnections} connections already open (--max-connections)`);
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const session = new Session(socket, {
      pool: this.pool, exports: this.exports, limits, preferredBlockSize: preferredBlockSize(this.pool.chunkBytes),
      log: this.opts.log, shuttingDown: () => this.stopping !== undefined, tls: this.tls,
    }, label);
    this.sessions.add(session);
    session.done.finally(() => this.sessions.delete(session));
  }
}

/** Open the pool in `dir` read-write (holding its lock) and serve it; shutdown closes it. */
export async function serve(dir: string, opts: ServeOptions & { open?: OpenOptions } = {}): Promise<NbdServer> {
  const pool = Pool.open(dir, opts.open ?? {});
  try {
    return await NbdServer.start(pool, { ...opts, closePool: true });
  } catch (e) {
    await pool.close();
    throw e;
  }
}

/** The block size clients should prefer: the chunk size, as a power of two no larger than 32 MiB. */
export function preferredBlockSize(chunkBytes: number): number {
  let p = 512;
  while (p * 2 <= MAX_PAYLOAD && chunkBytes % (p * 2) === 0) p *= 2;
  return p;
}

export function parseListen(s: string): { host: string; port: number } {
  let host = DEFAULT_HOST;
  let port = String(DEFAULT_PORT);
  const v6 = /^\[([^\]]+)\](?::(\d*))?$/.exec(s);
  if (v6) {
    host = v6[1];
    if (v6[2]) port = v6[2];
  } else if (/^\d+$/.test(s)) {
    port = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) host = s;
    else {
      if (i > 0) host = s.slice(0, i);
      port = s.slice(i + 1);
    }
    if (host.includes(':')) throw new ThinError('E_INVALID', `--listen ${s}: write IPv6 addresses in brackets, e.g. [::1]:${DEFAULT_PORT}`);
  }
  const p = Number(port);
  if (!/^\d+$/.test(port) || p > 65535) throw new ThinError('E_INVALID', `--listen ${s}: port must be 0..65535`);
  if (host === '') throw new ThinError('E_INVALID', `--listen ${s}: empty host`);
  return { host, port: p };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/**
 * Listen on a unix socket that only the owner can connect to: the umask is tightened
 * around the bind (which Node does synchronously inside listen()), so the socket never
 * exists with a wider mode; the caller also chmods it 0600 afterwards. In a worker
 * thread the umask cannot be changed and only the chmod applies.
 */
function listenPrivate(server: net.Server, socketPath: string, cb: () => void): void {
  let old: number | undefined;
  try {
    old = process.umask(0o177);
  } catch {
    old = undefined; // worker thread: process.umask(mask) is unavailable; the chmod after listen still applies
  }
  try {
    server.listen(socketPath, cb);
  } finally {
    if (old !== undefined) process.umask(old);
  }
}

/** Remove a unix socket file nobody listens on (left by a killed server); refuse to touch anything else. */
async function removeStaleSocket(p: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new ThinError('E_INVALID', `--socket ${p} exists and is not a socket; choose another path`, { file: p });
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (live) throw new ThinError('E_ADDR_IN_USE', `another server is listening on ${p}; stop it or choose another --socket path`, { file: p });
  try { fs.unlinkSync(p); } catch { /* gone */ }
}

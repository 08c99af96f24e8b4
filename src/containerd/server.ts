/**
 * The gRPC face of the snapshotter: containerd.services.snapshots.v1.Snapshots on a
 * unix socket, for containerd's proxy snapshotter plugin.
 *
 * Contract:
 * - The service definition is read at run time from thinsim's own .proto files in
 *   src/containerd/proto (beside this file's source; no build step copies them), with
 *   @grpc/proto-loader; the field numbers and types are containerd 1.6's.
 * - startSnapshotServer(snapshotter, socket) listens on `socket`, created mode 0600
 *   (umask 077 while binding, then chmod). A socket file left by a dead process is
 *   replaced; one that answers is E_POOL_BUSY (another server owns it).
 * - Every RPC calls one ThinSnapshotter method; a ThinError becomes the gRPC status
 *   of status.ts with "CODE: message" as its details. A request whose bytes do not
 *   decode is INVALID_ARGUMENT ("E_PARSE: ..."), not grpc-js's INTERNAL. List streams
 *   infos in batches (list-stream.ts), each written when the client has taken the one
 *   before; at most maxListStreams Lists build replies at once, and a stalled one is
 *   dropped after listStallMs.
 * - THINSIM_CONTAINERD_TRACE=1 logs each unary call (method, key, ms, error) on stderr.
 * - stop() refuses new calls, waits for calls in flight, removes the socket file.
 * - Resource caps (SnapshotServerLimits, defaults in DEFAULT_SERVER_LIMITS): at most
 *   `maxConnections` connections (the socket is ours, a net.Server whose connections are
 *   handed to gRPC; one more is closed at accept, and logged); messages over
 *   `maxReceiveBytes` are refused with RESOURCE_EXHAUSTED; at most `maxConcurrentStreams`
 *   calls at once per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: a client queues
 *   the rest); `maxSessionMemoryMiB` bounds what one connection may make the server buffer
 *   (HTTP/2 session memory: a client that never reads its replies is cut off there).
 */
import * as grpc from '@grpc/grpc-js';
import { ListStreams } from './list-stream';
import * as protoLoader from '@grpc/proto-loader';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { ThinError } from '../errors';
import type { Mount, SnapshotInfo, ThinSnapshotter } from './snapshots';
import { toServiceError } from './status';

/** Where thinsim's .proto files are: the source tree (dist/src/containerd -> src/containerd/proto). */
export function protoDir(): string {
  const candidates = [path.join(__dirname, 'proto'), path.resolve(__dirname, '..', '..', '..', 'src', 'containerd', 'proto')];
  const hit = candidates.find((d) => fs.existsSync(path.join(d, 'snapshots.proto')));
  if (!hit) throw new ThinError('E_NOT_FOUND', `thinsim's snapshots.proto is missing (looked in ${candidates.join(', ')}); reinstall thinsim`);
  return hit;
}

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

/** The loaded package definition (also used by tests' clients). */
export function loadSnapshotsProto(): grpc.GrpcObject {
  const def = protoLoader.loadSync('snapshots.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  return grpc.loadPackageDefinition(def);
}

export function snapshotsService(obj: grpc.GrpcObject): grpc.ServiceClientConstructor {
  const pkg = (((obj.containerd as grpc.GrpcObject).services as grpc.GrpcObject).snapshots as grpc.GrpcObject).v1 as grpc.GrpcObject;
  return pkg.Snapshots as grpc.ServiceClientConstructor;
}

const KIND: Record<SnapshotInfo['kind'], string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

function timestamp(d: Date): { seconds: number; nanos: number } {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function wireInfo(i: SnapshotInfo): object {
  return { name: i.name, parent: i.parent, kind: KIND[i.kind], created_at: timestamp(i.created), updated_at: timestamp(i.updated), labels: i.labels };
}

function wireMounts(ms: Mount[]): object {
  return { mounts: ms.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })) };
}

type Req = Record<string, any>;

const TRACE = process.env.THINSIM_CONTAINERD_TRACE === '1';

/** With THINSIM_CONTAINERD_TRACE=1, one line per call on stderr: method, key, milliseconds, outcome. */
function trace(method: string, req: Req, t0: number, e?: unknown): void {
  if (!TRACE) return;
  const key = String(req.key ?? req.name ?? (req.info as Req | undefined)?.name ?? '').slice(0, 120);
  process.stderr.write(`thinsim snapshotter: ${method} ${JSON.stringify(key)} ${(performance.now() - t0).toFixed(1)} ms${e ? ` ${toServiceError(e).details.slice(0, 200)}` : ''}\n`);
}

/**
 * A request whose bytes do not decode as its message. grpc-js answers those INTERNAL
 * itself, before any handler runs; the service answers INVALID_ARGUMENT (bad input, not
 * a server fault), so the decoder hands this marker to the handler instead of throwing.
 */
const MALFORMED = Symbol('malformed request');

function tolerant(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(Object.entries(def).map(([name, m]) => [name, {
    ...m,
    requestDeserialize: (b: Buffer) => {
      try {
        return m.requestDeserialize(b);
      } catch (e) {
        return { [MALFORMED]: (e as Error).message };
      }
    },
  }]));
}

function malformed(method: string, req: Req): { code: grpc.status; details: string } | undefined {
  const why = (req as { [MALFORMED]?: string })[MALFORMED];
  return why === undefined ? undefined : { code: grpc.status.INVALID_ARGUMENT, details: `E_PARSE: the ${method} request is not a valid protobuf message (${why})` };
}

/** A unary handler: run `fn`, answer its value or the error's status. */
function unary(method: string, fn: (req: Req) => Promise<object>): grpc.handleUnaryCall<Req, object> {
  return (call, cb) => {
    const bad = malformed(method, call.request);
    if (bad) { cb({ ...bad, name: 'Error', message: '' } as grpc.ServiceError); return; }
    const t0 = performance.now();
    fn(call.request).then((v) => { trace(method, call.request, t0); cb(null, v); }, (e) => { trace(method, call.request, t0, e); cb({ ...toServiceError(e), name: 'Error', message: '' } as grpc.ServiceError); });
  };
}

function labelsOf(req: Req): Record<string, string> {
  return { ...((req.labels as Record<string, string> | undefined) ?? {}) };
}

function handlers(s: ThinSnapshotter, lists: ListStreams): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary('Prepare', async (r) => wireMounts(await s.prepare(r.key, r.parent, labelsOf(r)))),
    View: unary('View', async (r) => wireMounts(await s.view(r.key, r.parent, labelsOf(r)))),
    Mounts: unary('Mounts', async (r) => wireMounts(await s.mountsOf(r.key))),
    Commit: unary('Commit', async (r) => { await s.commit(r.name, r.key, labelsOf(r)); return {}; }),
    Remove: unary('Remove', async (r) => { await s.remove(r.key); return {}; }),
    Stat: unary('Stat', async (r) => ({ info: wireInfo(await s.stat(r.key)) })),
    Update: unary('Update', async (r) => {
      const info = (r.info ?? {}) as Req;
      const paths = ((r.update_mask as Req | null)?.paths as string[] | undefined) ?? [];
      return { info: wireInfo(await s.update(info.name ?? '', labelsOf(info), paths)) };
    }),
    List: (call: grpc.ServerWritableStream<Req, object>) => {
      const bad = malformed('List', call.request);
      if (bad) { call.emit('error', Object.assign(new Error(''), bad)); return; }
      lists.serve(call, () => s.list((call.request.filters as string[] | undefined) ?? []), wireInfo, (i) => i.name)
        .catch((e) => call.emit('error', Object.assign(new Error(''), toServiceError(e))));
    },
    Usage: unary('Usage', async (r) => s.usage(r.key)),
    Cleanup: unary('Cleanup', async () => { await s.cleanup(); return {}; }),
  };
}

/** Is something answering on `socket`? */
function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export interface SnapshotServer {
  socket: string;
  /** Connections open now. */
  connections(): number;
  stop(): Promise<void>;
}

export interface SnapshotServerLimits {
  /** Connections at once; one more is closed at accept. */
  maxConnections: number;
  /** Largest request message (bytes); a larger one fails with RESOURCE_EXHAUSTED. */
  maxReceiveBytes: number;
  /** Calls at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /** What one connection may hold buffered in the server (HTTP/2 session memory, MiB). */
  maxSessionMemoryMiB: number;
  /** List calls building and writing replies at once, server-wide (list-stream.ts). */
  maxListStreams: number;
  /** How long a List waits for its client to take a reply before the call is dropped (ms). */
  listStallMs: number;
}

/**
 * A request holds at most 64 KiB of labels (records.ts) and a key or name of a few
 * hundred bytes, so 1 MiB refuses nothing containerd sends. Worst case, a server holds
 * maxConnections x maxConcurrentStreams x maxReceiveBytes of requests being received
 * (128 MiB with these defaults); replies wait for the client (List writes a batch only
 * when the last one drained), and maxSessionMemoryMiB caps what HTTP/2 queues besides.
 * List replies are built by at most maxListStreams calls at once, and a client that takes
 * no reply for listStallMs loses its call (list-stream.ts): measured, 128 List streams
 * that never read over 60 snapshots with 60 KB of labels each grew the server by 424 MiB
 * before this cap (test/safety/grpc-noread.test.ts checks the bound).
 */
export const DEFAULT_SERVER_LIMITS: SnapshotServerLimits = {
  maxConnections: 16,
  maxReceiveBytes: 2 ** 20,
  maxConcurrentStreams: 8,
  maxSessionMemoryMiB: 64,
  maxListStreams: 2,
  listStallMs: 30_000,
};

/**
 * Check that `socket` can be listened on (short enough; absent, or a dead server's socket,
 * which is removed) and return its absolute path; E_INVALID or E_POOL_BUSY otherwise.
 * The CLI calls it before opening the pool, so a bad --address changes nothing.
 */
export async function checkSocketPath(socket: string): Promise<string> {
  const abs = path.resolve(socket);
  if (Buffer.byteLength(abs) > 107) throw new ThinError('E_INVALID', `socket path ${abs} is longer than a unix socket allows (107 bytes); choose a shorter one`);
  if (fs.existsSync(abs)) {
    if (!fs.lstatSync(abs).isSocket()) throw new ThinError('E_INVALID', `${abs} exists and is not a socket; choose another --address`);
    if (await answers(abs)) throw new ThinError('E_POOL_BUSY', `another server answers on ${abs}; stop it or choose another --address`);
    fs.rmSync(abs); // a dead server's socket
  }
  return abs;
}

export async function startSnapshotServer(s: ThinSnapshotter, socket: string, opts: { limits?: Partial<SnapshotServerLimits>; log?: (m: string) => void } = {}): Promise<SnapshotServer> {
  const limits: SnapshotServerLimits = { ...DEFAULT_SERVER_LIMITS, ...opts.limits };
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new ThinError('E_INVALID', `snapshotter limit ${k} must be a whole number >= 1, got ${v}`);
  }
  const log = opts.log ?? ((m: string) => process.stderr.write(`thinsim snapshotter: ${m}\n`));
  const abs = await checkSocketPath(socket);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': limits.maxReceiveBytes,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
    'grpc-node.max_session_memory': limits.maxSessionMemoryMiB,
  });
  server.addService(tolerant(snapshotsService(loadSnapshotsProto()).service), handlers(s, new ListStreams(limits.maxListStreams, limits.listStallMs)));
  // The socket is ours (to count connections); gRPC gets each accepted connection.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const open = new Set<net.Socket>();
  const listener = net.createServer((conn) => {
    if (open.size >= limits.maxConnections) {
      log(`connection refused: ${limits.maxConnections} connections already open (--max-connections)`);
      conn.destroy();
      return;
    }
    open.add(conn);
    conn.once('close', () => open.delete(conn));
    injector.injectConnection(conn);
  });
  const old = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(abs, () => { listener.off('error', reject); resolve(); });
    });
  } catch (e) {
    throw new ThinError('E_IO', `cannot listen on ${abs}: ${(e as Error).message}`, { file: abs });
  } finally {
    process.umask(old);
  }
  fs.chmodSync(abs, 0o600);
  let stopping: Promise<void> | undefined;
  return {
    socket: abs,
    connections: () => open.size,
    stop: () => {
      stopping ??= new Promise<void>((resolve) => {
        listener.close(); // no new connections; its callback would wait for the open ones, which tryShutdown closes
        server.tryShutdown(() => resolve());
      }).then(() => fs.rmSync(abs, { force: true }));
      return stopping;
    },
  };
}

/**
 * Warm-up of a fresh server's request path, before it listens: a new Node process runs
 * its JavaScript in V8's interpreter and baseline tiers until each hot function has run
 * often enough to be optimised, which makes the first thousands of requests of a fresh
 * `thinsim serve` several times slower than the rest (docs/nbd.md, "Cold start").
 *
 * Contract:
 * - `warmUp(opts)` runs `requests` NBD requests (sharing breaks, reads and overwrites of
 *   4 KiB) through the same code a client's requests take: a real
 *   unix socket, Transmission, commands, Pool, the data path's inline and queued paths,
 *   the metadata's lookups, allocations and inserts. They go to a scratch pool in a
 *   fresh temporary directory (never the pool being served), whose chunk size is the
 *   served pool's, and which is removed before it returns, also on failure.
 * - Nothing of it stays: no file, no socket, no pool lock, no timer. The scratch data
 *   file is cut to nothing before its pool closes, so the chunks it wrote (at most
 *   MAX_BROKEN_BYTES) are dropped from the page cache without reaching the disk. It
 *   stops early after `maxMs`, or once `signal` aborts.
 * - It only speeds the real requests up; it never decides what they do. A failure (a
 *   full or read-only temporary directory, say) rejects with the cause: the caller logs
 *   it and serves anyway.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { ThinError } from '../errors';
import { Pool } from '../pool/pool';
import type { Target } from './commands';
import * as P from './protocol';
import { endSocket, Transmission } from './transmission';
import { DEFAULT_LIMITS } from './session';

export interface WarmUpOptions {
  /** The served pool's data block size, in 512-byte sectors (the scratch pool uses the same). */
  blockSectors: number;
  /** Requests to run (default 1024). */
  requests?: number;
  /** Stop after this long even if fewer requests ran (default 5000 ms). */
  maxMs?: number;
  /** Where the scratch directory goes (default os.tmpdir()). */
  tmpDir?: string;
  /** Stop early (between two requests) once this aborts: the server is being stopped. */
  signal?: AbortSignal;
}

export interface WarmUpResult {
  requests: number;
  ms: number;
}

/** Most bytes the scratch snapshot breaks (each break writes a whole chunk, dropped unwritten at the end). */
const MAX_BROKEN_BYTES = 64 * 2 ** 20;
const IO = 4096;

/** Run the warm-up (see the contract). */
export async function warmUp(opts: WarmUpOptions): Promise<WarmUpResult> {
  const t0 = performance.now();
  const want = opts.requests ?? 1024;
  const maxMs = opts.maxMs ?? 5000;
  const chunk = opts.blockSectors * 512;
  // Three requests per chunk (a break, a read, an overwrite), as many chunks as that
  // takes, within MAX_BROKEN_BYTES; further passes over them are reads and overwrites.
  const chunks = Math.max(1, Math.min(Math.ceil(want / 3), Math.floor(MAX_BROKEN_BYTES / chunk)));
  const size = chunks * chunk;
  const dir = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'thinsim-warm-up-'));
  let pool: Pool | undefined;
  let done = 0;
  try {
    // skip_block_zeroing: the origin's chunks are provisioned by one 4 KiB write each
    // (the rest is a hole, cached as zeros by one read), so making it writes little.
    pool = Pool.create(path.join(dir, 'pool'), { dataSize: 2 * size + chunk, metadataSize: 16 * 2 ** 20, blockSize: opts.blockSectors, zero: false });
    await pool.close();
    pool = Pool.open(path.join(dir, 'pool'), { commitInterval: 0 });
    await pool.createThin(1, size);
    const payload = Buffer.alloc(IO, 0xa5);
    for (let c = 0; c < chunks; c++) await pool.write(1, c * chunk, payload);
    // Into the page cache, holes too (as zeros), so the breaks copy inline as they do on
    // a served pool whose data is cached: the origin holds the data file's first blocks.
    readThrough(pool.data.path, size);
    await pool.createSnap(2, 1);
    const sock = path.join(dir, 'nbd.sock');
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, resolve); });
    try {
      const target: Target = {
        pool, structured: true, allocationContext: undefined,
        exp: { name: '2', id: 2, size, readOnly: false, description: 'warm-up' },
      };
      const client = await connect(server, sock, target);
      try {
        let rnd = 0x9e3779b9;
        const next = () => { rnd = (Math.imul(rnd ^ (rnd >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return rnd; };
        const page = (c: number) => c * chunk + (next() % (chunk / IO)) * IO;
        const order = Array.from({ length: chunks }, (_, i) => i);
        for (let i = order.length - 1; i > 0; i--) { const j = next() % (i + 1); [order[i], order[j]] = [order[j], order[i]]; }
        while (done < want && performance.now() - t0 < maxMs && !opts.signal?.aborted) {
          for (const c of order) {
            await client.call(P.Cmd.WRITE, page(c), IO, payload); // breaks sharing on the first pass
            await client.call(P.Cmd.READ, page(order[next() % chunks]), IO); // a shared or an own chunk
            await client.call(P.Cmd.WRITE, page(c), IO, payload); // overwrites an own chunk
            done += 3;
            if (done >= want || opts.signal?.aborted) break;
          }
        }
      } finally {
        await client.close();
      }
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    // The scratch data is never read again: cut the file to nothing, which drops its
    // dirty pages unwritten, so the close's sync has no data to write (a TRIM would
    // not do: ext4 writes dirty pages out before it punches them).
    fs.truncateSync(pool.data.path, 0);
    await pool.close();
    pool = undefined;
  } finally {
    try {
      // Only on a failure above (the error in flight is the one reported): still closed.
      if (pool) await pool.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return { requests: done, ms: performance.now() - t0 };
}

/** Read the first `length` bytes of `file` (into the page cache). */
function readThrough(file: string, length: number): void {
  const buf = Buffer.allocUnsafe(2 ** 20);
  const fd = fs.openSync(file, 'r');
  try {
    for (let at = 0; at < length;) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, length - at), at);
      if (n === 0) break;
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Client {
  call(type: number, offset: number, length: number, payload?: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** A connection served by a Transmission on `target` (no handshake), and a QD1 client on it. */
async function connect(server: net.Server, sock: string, target: Target): Promise<Client> {
  const accepted = new Promise<Transmission>((resolve) => server.once('connection', (s: net.Socket) => {
    s.pause();
    resolve(new Transmission(s, { limits: DEFAULT_LIMITS, log: () => undefined }, target, 'warm-up', { chunks: [], ended: false }));
  }));
  const socket = net.connect(sock);
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const transmission = await accepted;
  let buffered: Buffer = Buffer.alloc(0);
  let waiting: { resolve: () => void; reject: (e: Error) => void } | undefined;
  let failed: Error | undefined;
  const fail = (e: Error) => {
    failed ??= e;
    const w = waiting;
    waiting = undefined;
    w?.reject(failed);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new ThinError('E_IO', 'warm-up: the scratch connection closed')));
  socket.on('data', (d: Buffer) => {
    buffered = buffered.length ? Buffer.concat([buffered, d]) : d;
    // One request at a time: the reply is whole once its header and payload are here.
    if (buffered.length < P.SIMPLE_REPLY_SIZE) return;
    const magic = buffered.readUInt32BE(0);
    let need = P.SIMPLE_REPLY_SIZE;
    let error = 0;
    if (magic === P.SIMPLE_REPLY_MAGIC) {
      error = buffered.readUInt32BE(4);
    } else if (magic === P.STRUCTURED_REPLY_MAGIC) {
      if (buffered.length < P.STRUCTURED_HEADER_SIZE) return;
      need = P.STRUCTURED_HEADER_SIZE + buffered.readUInt32BE(16);
      if (buffered.readUInt16BE(6) & 0x8000) error = buffered.length >= need ? buffered.readUInt32BE(20) : -1;
    } else {
      fail(new ThinError('E_INVARIANT', `warm-up: reply magic 0x${magic.toString(16)}`));
      return;
    }
    if (buffered.length < need) return;
    buffered = buffered.subarray(need);
    const w = waiting;
    waiting = undefined;
    if (error !== 0) w?.reject(new ThinError('E_IO', `warm-up: a scratch request failed with NBD error ${error}`));
    else w?.resolve();
  });
  let cookie = 0n;
  return {
    call(type, offset, length, payload) {
      if (failed) return Promise.reject(failed);
      return new Promise<void>((resolve, reject) => {
        waiting = { resolve, reject };
        const header = P.request(type, 0, ++cookie, offset, length);
        socket.write(payload ? Buffer.concat([header, payload]) : header);
      });
    },
    async close() {
      socket.write(P.request(P.Cmd.DISC, 0, ++cookie, 0, 0));
      await endSocket(socket);
      await transmission.done;
    },
  };
}

/**
 * Warm-up of a fresh server's request path, before it listens: a new Node process runs
 * its JavaScript in V8's interpreter and baseline tiers until each hot function has run
 * often enough to be optimised, which makes the first thousands of requests of a fresh
 * `thinsim serve` several times slower than the rest (docs/nbd.md, "Cold start").
 *
 * Contract:
 * - `warmUp(opts)` runs `requests` NBD requests at queue depth 1 (4 KiB sharing breaks and
 *   overwrites on a snapshot, 4 KiB reads of its fully mapped origin and now and then of
 *   a hole) through the same code a client's requests take: an NbdServer on a unix
 *   socket, two clients that negotiate structured replies and NBD_OPT_GO as libnbd does,
 *   the sessions, Transmission, commands, Pool, the data path's inline and queued paths,
 *   the metadata's lookups, allocations and inserts. They go to a scratch pool in a
 *   fresh temporary directory (never the pool being served), whose chunk size is the
 *   served pool's, and which is removed before it returns, also on failure.
 * - Before those requests it settles the shapes V8 gives the objects a served pool and
 *   its connections are made of: the scratch pool is reopened SETTLE_OPENS times (with
 *   requests that wait behind a message and a large discard), and SETTLE_CONNECTIONS
 *   short connections are made, half ended without DISC. The scratch device is a sparse
 *   8 GiB with mapped chunks on both sides of 2^32, so sizes and offsets are met as small
 *   integers and as doubles. A caller gets most from it by opening the pool it serves
 *   afterwards (its objects are then made on the settled maps); `thinsim serve` does.
 * - Nothing of it stays: no file, no socket, no pool lock, no timer. The scratch data
 *   file is cut to nothing before its pool closes, so the chunks the requests wrote (at
 *   most MAX_BROKEN_BYTES) are dropped from the page cache without reaching the disk;
 *   what the settling's messages sync first reaches it (the origin's 4 KiB per chunk and
 *   SETTLE_OPENS chunks, under 2 MiB at 64 KiB chunks, and a few metadata commits). It
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
import * as P from './protocol';
import { type Endpoint, NbdServer } from './server';
import { endSocket } from './transmission';

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
/** The scratch device's (virtual) size, and where its upper half of mapped chunks starts: past 2^31, where V8 keeps numbers as doubles. */
const VIRTUAL_BYTES = 2 ** 33;
/** Connections made and closed before the request loop (see there): past V8's slack tracking, which ends after 7 objects of a class. */
const SETTLE_CONNECTIONS = 8;
/** Times the scratch pool is reopened before it is served (the same, for the pool's objects). */
const SETTLE_OPENS = 8;
/** The first of the small devices made then. */
const SETTLE_DEVICE = 10;
/** Chunks in that discard: enough for the data path to take the device's gate exclusively. */
const SETTLE_TRIM_CHUNKS = 80;
const HIGH_BYTES = 2 ** 32;

/** Run the warm-up (see the contract). */
export async function warmUp(opts: WarmUpOptions): Promise<WarmUpResult> {
  const t0 = performance.now();
  const want = opts.requests ?? 1024;
  const maxMs = opts.maxMs ?? 5000;
  const chunk = opts.blockSectors * 512;
  // Three requests per chunk (a break, a read, an overwrite), as many chunks as that
  // takes, within MAX_BROKEN_BYTES; further passes over them are reads and overwrites.
  const chunks = Math.max(1, Math.min(Math.ceil(want / 3), Math.floor(MAX_BROKEN_BYTES / chunk)));
  // A sparse device of VIRTUAL_BYTES: the first half of the chunks at its start, the rest
  // above HIGH_BYTES, so sizes and offsets reach the request path both as small integers
  // and as doubles (any device over 2 GiB has both). The objects and the optimised code
  // then take the general representation, which a served device of any size fits, and
  // its first requests do not deoptimise them.
  const high = Math.ceil(HIGH_BYTES / chunk);
  const low = Math.ceil(chunks / 2);
  const at = (c: number) => (c < low ? c : high + c - low) * chunk;
  const size = Math.max(Math.ceil(VIRTUAL_BYTES / chunk), high + chunks - low) * chunk;
  const mapped = chunks * chunk;
  const dir = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'thinsim-warm-up-'));
  let pool: Pool | undefined;
  let done = 0;
  try {
    // skip_block_zeroing: the origin's chunks are provisioned by one 4 KiB write each
    // (the rest is a hole, cached as zeros by one read), so making it writes little.
    pool = Pool.create(path.join(dir, 'pool'), { dataSize: 2 * mapped + chunk, metadataSize: 16 * 2 ** 20, blockSize: opts.blockSectors, zero: false });
    await pool.close();
    // With a commit timer as the served pool has (so the objects take the same shapes),
    // which never fires while this runs.
    pool = Pool.open(path.join(dir, 'pool'), { commitInterval: 2 ** 31 - 1 });
    await pool.createThin(1, size);
    const payload = Buffer.alloc(IO, 0xa5);
    for (let c = 0; c < chunks; c++) await pool.write(1, at(c), payload);
    // Into the page cache, holes too (as zeros), so the breaks copy inline as they do on
    // a served pool whose data is cached: the origin holds the data file's first blocks.
    readThrough(pool.data.path, mapped);
    await pool.createSnap(2, 1);
    // Reopened several times, a request on each device every time: as with the
    // connections below, V8's slack tracking then ends on the warm-up's pools, so the
    // served pool's objects (opened after it) and the warm-up's last one share their
    // final maps, and the code optimised here fits the served pool's objects.
    for (let i = 0; i < SETTLE_OPENS && !opts.signal?.aborted; i++) {
      await pool.close();
      pool = undefined;
      pool = Pool.open(path.join(dir, 'pool'), { commitInterval: 2 ** 31 - 1 });
      // Requests that wait for the pool's gate while a message (creating a device) holds
      // it, as they wait for a periodic commit when served: the gate's queue is then
      // used here, not first by the served pool. A sync and commit of almost nothing.
      const message = pool.createThin(SETTLE_DEVICE + i, chunk);
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([message, pool.read(1, at(i % chunks), IO), pool.write(2, at(i % chunks), payload)]);
      // And reads that wait for their device's gate, held by a discard of many chunks
      // (of a range nothing maps: it changes nothing), as reads queue when served.
      const trim = pool.discard(2, (low + 1) * chunk, SETTLE_TRIM_CHUNKS * chunk);
      await Promise.all([trim, pool.read(2, at(i % chunks), IO), pool.read(2, (low + 1) * chunk, IO)]);
    }
    // A server as `thinsim serve` starts it, and clients that negotiate as libnbd does:
    // the sockets, sessions and replies take the same shapes as a real client's.
    const server = await NbdServer.start(pool, { socket: path.join(dir, 'nbd.sock') });
    try {
      // Short connections first, one request each. V8 gives a new class's objects spare
      // room until it has made several of them, then shrinks the instances to the fields
      // used, which is a new map. With only the two connections below, the sockets and
      // their stream states, sessions and queues made for the first real clients were
      // the ones shrunk, and the stream and request functions optimised on the warm-up's
      // maps deoptimised on them ("wrong map"). After these they keep the final maps.
      for (let i = 0; i < SETTLE_CONNECTIONS && !opts.signal?.aborted; i++) {
        const c = await connect(server.endpoint, '1');
        try {
          await c.call(P.Cmd.READ, at(i % chunks), IO);
        } finally {
          await c.close(i % 2 === 0);
        }
      }
      const reader = await connect(server.endpoint, '1');
      const writer = await connect(server.endpoint, '2');
      try {
        let rnd = 0x9e3779b9;
        const next = () => { rnd = (Math.imul(rnd ^ (rnd >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return rnd; };
        const page = (c: number) => at(c) + (next() % (chunk / IO)) * IO;
        const order = Array.from({ length: chunks }, (_, i) => i);
        for (let i = order.length - 1; i > 0; i--) { const j = next() % (i + 1); [order[i], order[j]] = [order[j], order[i]]; }
        while (done < want && performance.now() - t0 < maxMs && !opts.signal?.aborted) {
          for (const c of order) {
            await writer.call(P.Cmd.WRITE, page(c), IO, payload, (done & 4) !== 0); // breaks sharing on the first pass
            await reader.call(P.Cmd.READ, page(next() % chunks), IO); // the origin, fully mapped
            await writer.call(P.Cmd.WRITE, page(c), IO, payload); // overwrites an own chunk
            done += 3;
            // Now and then a hole (reads as zeros), as a sparse served device has them.
            if ((done & 31) === 0) await reader.call(P.Cmd.READ, (low + 1) * chunk + (next() % (chunk / IO)) * IO, IO);
            if (done >= want || opts.signal?.aborted) break;
          }
        }
      } finally {
        await reader.close();
        await writer.close();
      }
      // The scratch data is never read again: cut the file to nothing, which drops its
      // dirty pages unwritten, so the shutdown's flush has no data to write (a TRIM would
      // not do: ext4 writes dirty pages out before it punches them).
      fs.truncateSync(pool.data.path, 0);
    } finally {
      await server.shutdown();
    }
  } finally {
    try {
      if (pool) {
        // As above, also after a failure.
        try {
          fs.truncateSync(pool.data.path, 0);
        } finally {
          await pool.close();
        }
      }
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
  /** `split`: the payload goes in a later turn than the header, as it may reach a server from libnbd. */
  call(type: number, offset: number, length: number, payload?: Buffer, split?: boolean): Promise<void>;
  /** `disc`: send NBD_CMD_DISC first (libnbd's nbd_shutdown); else only end the connection, as fio does. */
  close(disc?: boolean): Promise<void>;
}

/** Bytes from a socket, taken in exact lengths. */
class Wire {
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;

  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.serve();
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new ThinError('E_IO', 'warm-up: the scratch server closed the connection')));
  }

  take(n: number): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.want;
    if (!w || this.buf.length < w.n) return;
    this.want = undefined;
    const out = this.buf.subarray(0, w.n);
    this.buf = this.buf.subarray(w.n);
    w.resolve(out);
  }

  private fail(e: Error): void {
    this.failed ??= e;
    const w = this.want;
    this.want = undefined;
    w?.reject(this.failed);
  }
}

/** Connect to `endpoint`, negotiate structured replies and export `name` (NBD_OPT_GO), as libnbd does. */
async function connect(endpoint: Endpoint, name: string): Promise<Client> {
  if (endpoint.kind !== 'unix') throw new ThinError('E_INVARIANT', 'the warm-up server listens on a unix socket');
  const socket = net.connect(endpoint.path);
  const wire = new Wire(socket);
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const fail = (what: string) => new ThinError('E_INVARIANT', `warm-up: ${what}`);
  await wire.take(P.GREETING_SIZE);
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(P.ClientFlag.FIXED_NEWSTYLE | P.ClientFlag.NO_ZEROES);
  socket.write(flags);
  const option = async (opt: number, data: Buffer) => {
    const head = Buffer.alloc(P.OPTION_HEADER_SIZE);
    head.writeBigUInt64BE(P.OPTION_MAGIC, 0);
    head.writeUInt32BE(opt, 8);
    head.writeUInt32BE(data.length, 12);
    socket.write(Buffer.concat([head, data]));
    for (;;) {
      const r = await wire.take(20);
      const type = r.readUInt32BE(12);
      await wire.take(r.readUInt32BE(16));
      if (type === P.Rep.ACK) return;
      if (type & 0x80000000) throw fail(`option ${opt} refused with reply type 0x${type.toString(16)}`);
    }
  };
  await option(P.Opt.STRUCTURED_REPLY, Buffer.alloc(0));
  await option(P.Opt.GO, P.infoRequest(name));
  let cookie = 0n;
  return {
    async call(type, offset, length, payload, split) {
      const header = P.request(type, 0, ++cookie, offset, length);
      if (payload && split) {
        socket.write(header);
        // Two loop turns: the server (in this process) reads the header alone in between.
        for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
        socket.write(payload);
      } else {
        socket.write(payload ? Buffer.concat([header, payload]) : header);
      }
      const r = await wire.take(4);
      const magic = r.readUInt32BE(0);
      if (magic === P.SIMPLE_REPLY_MAGIC) {
        const rest = await wire.take(P.SIMPLE_REPLY_SIZE - 4);
        if (rest.readUInt32BE(0) !== 0) throw fail(`a scratch request failed with NBD error ${rest.readUInt32BE(0)}`);
        return;
      }
      if (magic !== P.STRUCTURED_REPLY_MAGIC) throw fail(`reply magic 0x${magic.toString(16)}`);
      const rest = await wire.take(P.STRUCTURED_HEADER_SIZE - 4);
      const body = await wire.take(rest.readUInt32BE(12));
      if (rest.readUInt16BE(2) & 0x8000) throw fail(`a scratch request failed with NBD error ${body.readUInt32BE(0)}`);
    },
    async close(disc = true) {
      if (disc) socket.write(P.request(P.Cmd.DISC, 0, ++cookie, 0, 0));
      await endSocket(socket);
    },
  };
}

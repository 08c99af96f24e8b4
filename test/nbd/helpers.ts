/**
 * Fixtures for the NBD suites: pools made with the CLI, `thinsim serve` as a child process
 * on a unix socket in a temp dir, external tools run with a timeout, and a small raw NBD
 * client (fixed newstyle, structured replies) for the requests real tools do not send.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { runTool, type RunResult } from '../../src/tools';
import { repoRoot } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';

export const MiB = 1024 * 1024;

/** Create a pool and thin devices with the CLI: `thins` maps id -> size ("256M"). */
export function makePool(dir: string, thins: Record<number, string>, extra: string[] = []): string {
  thinsimOk(['pool', 'create', dir, '--data-size', '1G', '--metadata-size', '64M', ...extra]);
  for (const [id, size] of Object.entries(thins)) thinsimOk(['thin', 'create', dir, id, '--size', size]);
  return dir;
}

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** Run a program without blocking the event loop (servers in this process keep serving). */
export const run = runTool;
export type Run = RunResult;

/** Run and require exit 0; returns stdout. */
export async function runOk(cmd: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

export interface Served {
  socket: string;
  child: ChildProcess;
  /** The line the server printed. */
  printed: string;
  uri(name: string | number): string;
  stderr(): string;
  /** SIGTERM and wait for the exit; returns the exit code. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/**
 * Start `thinsim serve POOL --socket <dir>/nbd.sock ...extra` (or, when `extra` has --listen,
 * on TCP), with `env` (default: this process's), and wait for its URI line.
 */
export async function serve(pool: string, socketDir: string, extra: string[] = [], socketPath?: string, env?: NodeJS.ProcessEnv): Promise<Served> {
  const socket = socketPath ?? path.join(socketDir, `nbd-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const tcp = extra.includes('--listen');
  const where = tcp ? [] : ['--socket', socket];
  const child = spawn(process.execPath, [path.join(repoRoot(), 'bin', 'thinsim.js'), 'serve', pool, ...where, ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  // 'close', not 'exit': stderr is complete by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  const printed = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`thinsim serve printed nothing in 20 s; stderr:\n${err}`)), 20_000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl)); }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`thinsim serve exited ${code} before serving:\n${err}`)); });
  });
  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> | undefined;
  return {
    socket, child, printed,
    uri: (name) => (tcp ? printed.replace(/\/[^/]*$/, `/${name}`) : `nbd+unix:///${name}?socket=${socket}`),
    stderr: () => err,
    stop: () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        const r = await exited;
        clearTimeout(timer);
        return { ...r, stderr: err };
      })();
      return stopped;
    },
  };
}

/** Random bytes from a seed (reproducible). */
export function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const v = (t ^ (t >>> 14)) >>> 0;
    if (i + 4 <= n) b.writeUInt32LE(v, i);
    else for (let k = 0; i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
  }
  return b;
}

/** Mapped ranges of device `id` from `thinsim dump --format json` (bytes, merged, sorted). */
export function dumpRuns(pool: string, id: number, chunk: number): Array<[number, number]> {
  const dump = JSON.parse(thinsimOk(['dump', pool, '--format', 'json']));
  const dev = dump.devices.find((d: { dev_id: number }) => d.dev_id === id);
  assert.ok(dev, `device ${id} in the dump`);
  const runs: Array<[number, number]> = [];
  for (const m of dev.mappings as Array<{ origin_begin?: number; origin_block?: number; length?: number }>) {
    const begin = (m.origin_begin ?? m.origin_block)! * chunk;
    const len = (m.length ?? 1) * chunk;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === begin) last[1] += len;
    else runs.push([begin, len]);
  }
  return runs.sort((x, y) => x[0] - y[0]);
}

/** `nbdinfo --map --json` as data runs [offset, length] (type 0), merged. */
export function dataRuns(map: Array<{ offset: number; length: number; type: number }>): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const e of map) {
    if (e.type !== 0) continue;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === e.offset) last[1] += e.length;
    else runs.push([e.offset, e.length]);
  }
  return runs;
}

export function fileExists(p: string): boolean {
  return fs.existsSync(p);
}

// ------------------------------------------------------------------------------ raw client

export const C = {
  INIT: 0x4e42444d41474943n, OPT: 0x49484156454f5054n, OPT_REPLY: 0x3e889045565a9n,
  REQ: 0x25609513, SIMPLE: 0x67446698, STRUCT: 0x668e33ef,
};

/** Buffered reads from a raw socket, for tests (no backpressure needed). */
export class Wire {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (c) => { this.buf = Buffer.concat([this.buf, c]); this.wake(); });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => { this.closed = true; this.wake(); });
  }
  static connect(socketPath: string): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(new Wire(s)));
      s.once('error', reject);
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** Exactly n bytes, or throws when the server closes first or `timeoutMs` passes. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`server closed the connection (wanted ${n} bytes, have ${this.buf.length})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(timer); r(); });
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }
  write(b: Buffer): void {
    this.sock.write(b);
  }
  /** Resolves true when the server closes the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 50);
        this.waiters.push(() => { clearTimeout(timer); r(); });
      });
    }
    return this.closed;
  }
  end(): void {
    this.sock.destroy();
  }
}

export function optionBytes(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(C.OPT, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

export interface OptReply { option: number; type: number; data: Buffer }

export async function readOptReply(w: Wire): Promise<OptReply> {
  const h = await w.read(20);
  assert.equal(h.readBigUInt64BE(0), C.OPT_REPLY, 'option reply magic');
  const data = await w.read(h.readUInt32BE(16));
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
}

/** Greeting + client flags (fixed newstyle, no zeroes). */
export async function hello(w: Wire): Promise<void> {
  const g = await w.read(18);
  assert.equal(g.readBigUInt64BE(0), C.INIT);
  assert.equal(g.readBigUInt64BE(8), C.OPT);
  const f = Buffer.alloc(4);
  f.writeUInt32BE(3, 0);
  w.write(f);
}

function str32(s: string): Buffer {
  const b = Buffer.from(s);
  const l = Buffer.alloc(4);
  l.writeUInt32BE(b.length, 0);
  return Buffer.concat([l, b]);
}

export interface Session { w: Wire; size: bigint; flags: number }

/** Full handshake: structured replies, base:allocation, GO. */
export async function connect(socketPath: string, name: string, opts: { structured?: boolean; meta?: boolean } = {}): Promise<Session> {
  const w = await Wire.connect(socketPath);
  await hello(w);
  if (opts.structured !== false) {
    w.write(optionBytes(8));
    assert.equal((await readOptReply(w)).type, 1, 'STRUCTURED_REPLY acked');
    if (opts.meta !== false) {
      const q = Buffer.concat([str32(name), Buffer.from([0, 0, 0, 1]), str32('base:allocation')]);
      w.write(optionBytes(10, q));
      const r = await readOptReply(w);
      assert.equal(r.type, 4, 'META_CONTEXT');
      assert.equal(r.data.subarray(4).toString(), 'base:allocation');
      assert.equal((await readOptReply(w)).type, 1);
    }
  }
  const go = Buffer.concat([str32(name), Buffer.from([0, 0])]);
  w.write(optionBytes(7, go));
  let size = -1n;
  let flags = 0;
  for (;;) {
    const r = await readOptReply(w);
    if (r.type === 1) break;
    assert.equal(r.type, 3, `GO reply type 0x${r.type.toString(16)}: ${r.data.toString()}`);
    if (r.data.readUInt16BE(0) === 0) { size = r.data.readBigUInt64BE(2); flags = r.data.readUInt16BE(10); }
  }
  return { w, size, flags };
}

export function requestBytes(type: number, flags: number, cookie: bigint, offset: bigint | number, length: number, payload?: Buffer): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(C.REQ, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([b, payload]) : b;
}

export interface Reply {
  cookie: bigint;
  error: number;
  message?: string;
  data?: Buffer;
  extents?: Array<{ length: number; flags: number }>;
}

/** One whole reply (all structured chunks up to DONE); `readLength` is the READ length for simple replies. */
export async function readReply(w: Wire, readLength?: (cookie: bigint) => number): Promise<Reply> {
  const magic = (await w.read(4)).readUInt32BE(0);
  if (magic === C.SIMPLE) {
    const rest = await w.read(12);
    const error = rest.readUInt32BE(0);
    const cookie = rest.readBigUInt64BE(4);
    const n = error === 0 && readLength ? readLength(cookie) : 0;
    return { cookie, error, data: n > 0 ? await w.read(n) : undefined };
  }
  assert.equal(magic, C.STRUCT, `reply magic 0x${magic.toString(16)}`);
  const out: Reply = { cookie: 0n, error: 0 };
  const parts: Buffer[] = [];
  for (let first = true; ; first = false) {
    const h = first ? await w.read(16) : (await w.read(20)).subarray(4);
    const flags = h.readUInt16BE(0);
    const type = h.readUInt16BE(2);
    out.cookie = h.readBigUInt64BE(4);
    const payload = await w.read(h.readUInt32BE(12));
    if (type === 1) parts.push(payload.subarray(8));
    else if (type === 5) {
      out.extents = [];
      for (let i = 4; i < payload.length; i += 8) out.extents.push({ length: payload.readUInt32BE(i), flags: payload.readUInt32BE(i + 4) });
    } else if (type & 0x8000) {
      out.error = payload.readUInt32BE(0);
      out.message = payload.subarray(6, 6 + payload.readUInt16BE(4)).toString();
    }
    if (flags & 1) break;
  }
  if (parts.length) out.data = Buffer.concat(parts);
  return out;
}

/** Send one request and wait for its reply (nothing else in flight). */
export async function call(s: Session, type: number, offset: number | bigint, length: number, opts: { flags?: number; payload?: Buffer; cookie?: bigint } = {}): Promise<Reply> {
  const cookie = opts.cookie ?? 0x1122334455667788n;
  s.w.write(requestBytes(type, opts.flags ?? 0, cookie, offset, length, opts.payload));
  const r = await readReply(s.w, type === 0 ? () => length : undefined);
  assert.equal(r.cookie, cookie, 'the cookie is echoed');
  return r;
}

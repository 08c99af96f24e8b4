/**
 * A mounted layer's tree, worked on from a child process (tree-worker.ts).
 *
 * Contract: each call forks one tree worker, sends it one request and settles with its
 * answer; a ThinError thrown there comes back with its code, message and details; a
 * worker that dies without answering is an E_IO error naming its exit. The caller's
 * process never touches the tree itself: the NBD server behind the mount may run in it,
 * and nothing that waits on a mount may share that server's thread pool or event loop.
 */
import { fork } from 'node:child_process';
import * as path from 'node:path';
import { ThinError, type ThinErrorCode, type ThinErrorDetails } from '../errors';
import type { ApplyOptions, ApplyResult, LayerSource } from './apply';
import type { LayerFileEntry } from './tree-ops';

const WORKER = path.join(__dirname, 'tree-worker.js');

function call<T>(op: string, args: unknown[], onProgress?: (n: number) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // No inherited exec flags (--test, --cpu-prof, --inspect): the worker is a plain node.
    const child = fork(WORKER, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    let settled = false;
    child.on('message', (m: { progress?: number; result?: T; error?: { code: ThinErrorCode; message: string; details: ThinErrorDetails } }) => {
      if (m.progress !== undefined) { onProgress?.(m.progress); return; }
      settled = true;
      if (m.error) reject(new ThinError(m.error.code, m.error.message, m.error.details));
      else resolve(m.result as T);
    });
    child.on('error', (e) => { if (!settled) { settled = true; reject(new ThinError('E_IO', `the tree worker could not start: ${e.message}`)); } });
    child.on('exit', (code, signal) => {
      if (!settled) { settled = true; reject(new ThinError('E_IO', `the tree worker (${op}) exited ${signal ?? code} without an answer`, { op })); }
    });
    child.send({ op, args });
  });
}

/** The tree mounted at `root`, worked on from a tree worker. */
export class Tree {
  constructor(readonly root: string) {}

  /** Apply a layer tar (apply.ts's contract); progress reports stored bytes read. */
  apply(src: LayerSource, opts: Omit<ApplyOptions, 'onProgress'> & { onProgress?: (n: number) => void } = {}): Promise<ApplyResult> {
    const { onProgress, ...rest } = opts;
    return call('apply', [src, this.root, rest], onProgress);
  }

  list(): Promise<LayerFileEntry[]> { return call('list', [this.root]); }

  async read(rel: string, offset?: number, length?: number): Promise<Buffer> {
    return Buffer.from(await call<Uint8Array>('read', [this.root, rel, offset, length]));
  }

  /** Write and fsync; resolves with the milliseconds that took in the worker (open, write, fsync). */
  write(rel: string, data: Uint8Array, opts: { offset?: number; append?: boolean } = {}): Promise<number> {
    return call('write', [this.root, rel, data, opts]);
  }

  /** Read a whole file in the worker (filling the page cache); resolves with its byte count. */
  readCount(rel: string): Promise<number> { return call('readCount', [this.root, rel]); }

  /** Docker's init layer files (the paths made). */
  init(): Promise<string[]> { return call('init', [this.root]); }
}

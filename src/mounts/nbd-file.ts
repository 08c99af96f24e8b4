/**
 * A thin device seen as a file: served by an in-process NBD server on a unix socket, and
 * exposed by nbdfuse as DIR/nbd-mnt/nbd.
 *
 * Contract: read-only exports are read-only at the NBD level (and nbdfuse -r). start()
 * reports each piece as it comes up (`onStep`), so the caller can record it for the
 * crash cleanup before the next one exists. close() undoes it in reverse order: nbdfuse
 * unmounted (lazily, then SIGKILL, if it will not go), then the NBD server shut down,
 * then the socket and directories removed (rmdir only: a directory still mounted is
 * never emptied). A missing tool is an E_NOT_FOUND error naming its Debian package.
 * retarget(id) points the file at another device of the same size (or at none, when
 * every access fails with EIO) without restarting nbdfuse (nbd/exports.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';
import { NbdServer } from '../nbd/server';
import type { Pool } from '../pool/pool';
import { requireTool, runTool } from '../tools';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface NbdFile {
  /** The FUSE file holding the device's bytes. */
  file: string;
  /** The private directory (socket, FUSE mount point, room for a mount point). */
  dir: string;
  /** Point the file at device `id` (same size), or at none. */
  retarget(id: number | undefined): void;
  close(): Promise<void>;
}

export interface NbdFileSteps { socket?: string; fuseDir?: string; nbdfusePid?: number }

/** Serve device `id` (or, with `size`, no device yet: UNBOUND) of `pool` inside `dir` (made by the caller) and expose it with nbdfuse. */
export async function startNbdFile(pool: Pool, id: number, dir: string, opts: { readOnly: boolean; name?: string; size?: number; onStep?: (s: NbdFileSteps) => void }): Promise<NbdFile> {
  const nbdfuse = requireTool('nbdfuse', 'see a thin device as a file');
  const fusermount = requireTool('fusermount3', 'unmount nbdfuse');
  if (!fs.existsSync('/dev/fuse')) throw new ThinError('E_NOT_FOUND', '/dev/fuse is missing: load the fuse module (modprobe fuse) or run with access to /dev/fuse');
  const fuseDir = path.join(dir, 'nbd-mnt');
  const socket = path.join(dir, 'nbd.sock');
  const pidfile = `${fuseDir}.pid`;
  fs.mkdirSync(fuseDir);
  const name = opts.name ?? 'layer';
  let server: NbdServer | undefined;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const close = async () => {
    try {
      if (child && child.exitCode === null && child.signalCode === null) {
        const r = await runTool(fusermount, ['-u', fuseDir], 60_000);
        if (r.status !== 0) await runTool(fusermount, ['-uz', fuseDir], 60_000);
        const timer = setTimeout(() => child?.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
    } finally {
      try {
        await server?.shutdown();
      } finally {
        for (const p of [socket, pidfile]) fs.rmSync(p, { force: true });
        try { fs.rmdirSync(fuseDir); } catch { /* still mounted or not empty: left for the crash cleanup, never emptied */ }
      }
    }
  };
  try {
    opts.onStep?.({ socket, fuseDir });
    server = await NbdServer.start(pool, { socket, exports: [{ name, id, ...(opts.size !== undefined ? { size: opts.size } : {}) }], readOnly: opts.readOnly });
    const c = spawn(nbdfuse, [...(opts.readOnly ? ['-r'] : []), '-P', pidfile, fuseDir, server.uri(name)], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let err = '';
    c.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    exited = new Promise<void>((r) => c.on('exit', () => r()));
    c.on('error', (e) => { err += String(e); });
    if (c.pid) opts.onStep?.({ socket, fuseDir, nbdfusePid: c.pid });
    const file = path.join(fuseDir, 'nbd');
    // nbdfuse writes its pid file once the FUSE mount is up (usually within ~20 ms): poll
    // briefly at first, then back off.
    const deadline = Date.now() + 60_000;
    for (let wait = 5; ; wait = Math.min(100, wait * 2)) {
      if (fs.existsSync(pidfile) && fs.existsSync(file)) break;
      if (c.exitCode !== null || c.signalCode !== null) throw new ThinError('E_IO', `nbdfuse exited (${c.exitCode ?? c.signalCode}) before the export appeared: ${err.trim()}`);
      if (Date.now() > deadline) throw new ThinError('E_IO', `nbdfuse did not expose ${server.uri(name)} within 60 s: ${err.trim()}`);
      await sleep(wait);
    }
    const srv = server;
    return { file, dir, close, retarget: (to) => srv.exports.retarget(name, to) };
  } catch (e) {
    await close();
    throw e;
  }
}

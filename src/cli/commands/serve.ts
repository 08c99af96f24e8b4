import * as v8 from 'v8';
import type { Argv, CommandModule } from 'yargs';
import { isThinError, ThinError } from '../../errors';
import type { NbdServer } from '../../nbd/server';
import { PoolLock } from '../../pool/pool-lock';
import { loadTable } from '../../pool/table';
import { stderr, stdout } from '../output';
import { socketPath, thinId, wholeNumber } from '../args';

/** "NAME=ID" or a bare "ID" (served under its id). */
function parseExport(s: string): { name: string; id: number } {
  const i = s.lastIndexOf('=');
  const name = i < 0 ? s : s.slice(0, i);
  const id = i < 0 ? s : s.slice(i + 1);
  if (name === '') throw new ThinError('E_INVALID', `--export ${s}: the export name is empty; write NAME=ID, e.g. --export root=1`);
  return { name, id: thinId(id, `--export ${s}: thin device id`) };
}

/**
 * V8 flags for this process, set first thing in the handler so that the request path's
 * functions (compiled lazily, at their first call) start with them; one given on node's
 * command line is left alone. Measured over a fresh server's first 4,096 requests, server
 * CPU (user+sys), docs/nbd.md "Cold start":
 * - `--interrupt-budget=8192`, V8's tier-up budget (Node 20's default is 67,584 bytecode
 *   bytes, three times, before a function is optimised): at the default a small function
 *   on the request path needs a few thousand calls to be optimised, more than the warm-up
 *   makes, and a fresh server runs it unoptimised meanwhile. Kept: V8 reads it whenever
 *   it resets a function's budget. Together with the handshake in the warm-up: reads
 *   540 -> 410 ms, sharing breaks 890 -> 550 ms (2026-12-07).
 * Measured the same way and not kept (2026-12-08, load 5-8, paired rounds):
 * - `--always-sparkplug` (every function compiled to baseline code at its first call). On
 *   node's command line it helped: reads 470 -> 320 ms, sharing breaks 550 -> 370 ms
 *   (medians of 5 rounds). Set here at run time it did not: reads 320 -> 430 ms, sharing
 *   breaks 420 -> 425 ms (medians of 10 rounds), so it is not set; the difference is
 *   presumably the code compiled before this handler runs, which only the command line
 *   reaches.
 * - `--no-lazy-feedback-allocation` (on the command line: reads 350 -> 300 ms, sharing
 *   breaks 490 -> 500 ms, 3 rounds, within the noise) and `--maglev` (Node 20's V8 11.3:
 *   350 -> 380 ms and 490 -> 590 ms, worse).
 */
const V8_FLAGS: ReadonlyArray<{ name: string; value: string }> = [
  { name: '--interrupt-budget', value: '--interrupt-budget=8192' },
];

function tuneV8(): void {
  for (const f of V8_FLAGS) {
    if (process.execArgv.some((a) => a === f.name || a.startsWith(`${f.name}=`) || a === `--no-${f.name.slice(2)}`)) continue;
    v8.setFlagsFromString(f.value);
  }
}

/**
 * Warm the request path up on a scratch pool (src/nbd/warm-up.ts) with the chunk size of
 * the pool in `dir`, before that pool is opened: its objects (data device, metadata,
 * gates, caches) are then made after the warm-up has settled their shapes and field
 * representations, so the first real requests find the maps the optimised code expects.
 * A pool opened first kept the maps it was made with, which the warm-up's objects then
 * generalised (a time held as a double where the served one held 0): the served objects
 * migrated at their first request and a dozen request functions deoptimised (docs/nbd.md,
 * "Cold start"). A failure only costs speed: it is logged and serving goes on. A signal
 * during it (`stop` aborts) means: serve nothing (E_CLOSED, the handler exits 0).
 */
async function warmUpFor(dir: string, log: (m: string) => void, stop: AbortSignal): Promise<void> {
  // A missing or broken pool fails here, before the warm-up, as does one another writer
  // holds (serve() takes the lock itself afterwards, so a writer that comes in between is
  // still refused, only later).
  const { dataBlockSize } = loadTable(dir);
  PoolLock.refuseIfHeld(dir);
  const { warmUp } = await import('../../nbd/warm-up');
  try {
    const r = await warmUp({ blockSectors: dataBlockSize, signal: stop });
    log(`warmed up: ${r.requests} requests on a scratch pool in ${Math.round(r.ms)} ms`);
  } catch (e) {
    // Dropped on purpose: the warm-up only makes the first requests faster; the server
    // is as correct without it. The cause is logged so a broken temp directory shows.
    log(`warm-up skipped (serving anyway; the first requests are slower): ${(e as Error)?.message ?? String(e)}`);
  }
  if (stop.aborted) throw new ThinError('E_CLOSED', 'stopped by a signal before serving');
}

export const serveCommand: CommandModule<{}, any> = {
  command: 'serve <pool>',
  describe: 'Export thin devices over NBD (qemu-img, nbdcopy, nbdfuse, fio ...) until SIGINT/SIGTERM',
  builder: (y: Argv) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory (opened read-write: holds its lock)' })
    .option('listen', { type: 'string', describe: 'TCP HOST:PORT (default 127.0.0.1:10809; non-loopback addresses get a warning)' })
    .option('socket', { type: 'string', describe: 'listen on a unix socket instead of TCP' })
    .option('read-only', { type: 'boolean', describe: 'every export read-only (writes fail with EPERM)' })
    .option('export', { type: 'string', array: true, describe: 'NAME=ID, repeatable (default: every thin device under its id)' })
    .option('max-connections', { type: 'string', default: '16' })
    .option('tls', { type: 'string', choices: ['off', 'on', 'require'], describe: 'NBD_OPT_STARTTLS: off, on (optional) or require (default: on when keys are given, else off)' })
    .option('tls-psk', { type: 'string', describe: 'psktool key file (username:hexkey lines)' })
    .option('tls-certificates', { type: 'string', describe: 'directory with ca-cert.pem, server-cert.pem, server-key.pem' })
    .option('warm-up', { type: 'boolean', default: true, describe: 'before listening, run about 1,000 requests on a scratch pool in the temporary directory so the first clients get optimised code (--no-warm-up: listen at once)' })
    .conflicts('listen', 'socket'),
  handler: async (a) => {
    tuneV8();
    const exports = (a.export as string[] | undefined)?.map(parseExport);
    const maxConnections = wholeNumber(a['max-connections'], '--max-connections', { min: 1, max: 65536 });
    if (a.socket !== undefined) socketPath(a.socket);
    const { serve } = await import('../../nbd/server');
    const log = (m: string) => stderr(`thinsim serve: ${m}\n`);
    // Signals are handled from the start: during the warm-up a signal stops it and
    // nothing is served; once serving, whoever saw the URI may stop us.
    let server: NbdServer | undefined;
    const early = new AbortController();
    let signals = 0;
    let wake!: () => void;
    const signalled = new Promise<void>((resolve) => { wake = resolve; });
    const stop = (sig: string) => {
      signals++;
      if (server === undefined) {
        if (signals === 1) log(`${sig}: stopping before serving`);
        early.abort();
      } else if (signals > 1) {
        log(`${sig} again: dropping connections`);
        server.dropConnections();
      } else {
        log(`${sig}: finishing in-flight requests, then flushing and closing the pool`);
      }
      wake();
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    try {
      // Bad TLS options are refused before the warm-up, not seconds later (serve() loads them for use).
      const { loadTls } = await import('../../nbd/tls');
      loadTls({ mode: a.tls, pskFile: a['tls-psk'], certificatesDir: a['tls-certificates'] });
      if (a['warm-up']) await warmUpFor(a.pool, log, early.signal);
      server = await serve(a.pool, {
        listen: a.listen, socket: a.socket, readOnly: a['read-only'], maxConnections,
        exports, log, open: { commitInterval: 1000 },
        tls: { mode: a.tls, pskFile: a['tls-psk'], certificatesDir: a['tls-certificates'] },
      });
    } catch (e) {
      if (early.signal.aborted && isThinError(e, 'E_CLOSED')) {
        log('stopped; pool closed');
        return;
      }
      throw e;
    }
    if (signals === 0) {
      stdout(`${server.uri()}\n`);
      const names = server.exports.list().map((e) => `${e.name}=${e.id}`);
      const tlsNote = server.tls ? `, TLS ${server.tls.mode} (${server.tls.kind})` : '';
      log(`serving ${names.length ? names.join(', ') : 'no exports yet'} of ${a.pool}${a['read-only'] ? ' read-only' : ''}${tlsNote}; SIGINT or SIGTERM stops`);
      await signalled;
    }
    // Also when a signal came while the server was starting to listen.
    await server.shutdown();
    log('stopped; pool closed');
  },
};

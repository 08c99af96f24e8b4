import type { Argv, CommandModule } from 'yargs';
import { ThinError } from '../../errors';
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
    .conflicts('listen', 'socket'),
  handler: async (a) => {
    const exports = (a.export as string[] | undefined)?.map(parseExport);
    const maxConnections = wholeNumber(a['max-connections'], '--max-connections', { min: 1, max: 65536 });
    if (a.socket !== undefined) socketPath(a.socket);
    const { serve } = await import('../../nbd/server');
    const log = (m: string) => stderr(`thinsim serve: ${m}\n`);
    const server = await serve(a.pool, {
      listen: a.listen, socket: a.socket, readOnly: a['read-only'], maxConnections,
      exports, log, open: { commitInterval: 1000 },
      tls: { mode: a.tls, pskFile: a['tls-psk'], certificatesDir: a['tls-certificates'] },
    });
    // Signals are handled from before the URI is printed: whoever saw it may stop us.
    const stopped = new Promise<void>((resolve, reject) => {
      let signals = 0;
      const stop = (sig: string) => {
        if (signals++ > 0) {
          log(`${sig} again: dropping connections`);
          server.dropConnections();
          return;
        }
        log(`${sig}: finishing in-flight requests, then flushing and closing the pool`);
        server.shutdown().then(resolve, reject);
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
    stdout(`${server.uri()}\n`);
    const names = server.exports.list().map((e) => `${e.name}=${e.id}`);
    const tlsNote = server.tls ? `, TLS ${server.tls.mode} (${server.tls.kind})` : '';
    log(`serving ${names.length ? names.join(', ') : 'no exports yet'} of ${a.pool}${a['read-only'] ? ' read-only' : ''}${tlsNote}; SIGINT or SIGTERM stops`);
    await stopped;
    log('stopped; pool closed');
  },
};

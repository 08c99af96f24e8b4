/**
 * `thinsim snapshotter POOL --address SOCKET`: serve the pool as a containerd proxy
 * snapshotter (src/containerd) until SIGINT/SIGTERM. Options are named as containerd's
 * devmapper snapshotter names them in its config (base_image_size, fs_type,
 * fs_options, async_remove, discard_blocks); `--max-connections` (default 16) is
 * thinsim's own (the other caps: DEFAULT_SERVER_LIMITS in src/containerd/server.ts).
 * On a signal: stop serving (calls in flight finish), detach every loop device the
 * service attached, commit and close the pool (releasing its lock), exit 0. While a
 * snapshot's loop device is mounted (a running container) the first signal only warns
 * and the service keeps serving: the devices are served by this process. A second
 * signal stops anyway (the mounted devices fail the close after the mount host's wait:
 * E_MOUNTED, exit 1).
 */
import type { Argv, CommandModule } from 'yargs';
import { ThinError } from '../../errors';
import { parseSize } from '../../units';
import { wholeNumber } from '../args';
import { stderr, stdout } from '../output';

export const snapshotterCommand: CommandModule<{}, any> = {
  command: 'snapshotter <pool>',
  describe: 'Serve a pool as a containerd proxy snapshotter (gRPC on a unix socket) until SIGINT/SIGTERM',
  builder: (y: Argv) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory (thinsim pool create); opened read-write (holds its lock)' })
    .option('address', { type: 'string', demandOption: true, describe: 'unix socket to listen on (created 0600); containerd\'s proxy_plugins address' })
    .option('base-image-size', { type: 'string', default: '10G', describe: 'virtual size of the base device, made on the first Prepare without a parent' })
    .option('fs-type', { type: 'string', choices: ['ext4', 'xfs'], default: 'ext4', describe: 'filesystem of the base device' })
    .option('fs-options', { type: 'string', default: '', describe: 'extra mkfs arguments for the base device, split at spaces (e.g. "-N 200000")' })
    .option('async-remove', { type: 'boolean', default: false, describe: 'Remove only forgets a snapshot; Cleanup deletes its device' })
    .option('max-connections', { type: 'string', default: '16', describe: 'connections at once; one more is closed at accept' })
    .option('discard-blocks', { type: 'boolean', default: true, describe: 'discard a device\'s blocks before deleting it (a sparse data file gives the space back); --no-discard-blocks to skip' }),
  handler: async (a) => {
    const { ThinSnapshotter, startSnapshotServer, checkSocketPath } = await import('../../containerd');
    const log = (m: string) => stderr(`thinsim snapshotter: ${m}\n`);
    if (typeof a.address !== 'string' || a.address === '') throw new ThinError('E_INVALID', '--address needs a unix socket path, e.g. /run/thinsim/snapshotter.sock');
    const baseSize = parseSize(a['base-image-size'], '--base-image-size');
    const maxConnections = wholeNumber(a['max-connections'], '--max-connections', { min: 1, max: 65536 });
    await checkSocketPath(a.address); // before the pool is opened: a bad address changes nothing
    const snap = await ThinSnapshotter.open(a.pool, {
      baseSize,
      fsType: a['fs-type'], fsOptions: String(a['fs-options']).split(/\s+/).filter(Boolean), asyncRemove: a['async-remove'], discardBlocks: a['discard-blocks'],
    });
    let server;
    try {
      server = await startSnapshotServer(snap, a.address, { limits: { maxConnections }, log });
    } catch (e) {
      await snap.close();
      throw e;
    }
    const srv = server;
    const stopped = new Promise<void>((resolve, reject) => {
      let signals = 0;
      let stopping = false;
      const stop = (sig: string) => {
        signals++;
        if (stopping) { log(`${sig} again: still stopping (detaching loop devices, committing the pool)`); return; }
        // The loop devices are served by this process: stopping under a mounted one (a running
        // container) breaks that container's filesystem, so the first signal only warns.
        const busy = snap.mounted();
        if (busy.length && signals === 1) {
          log(`${sig}: ${busy.length} snapshot(s) are mounted (${busy.slice(0, 5).map((m) => `${m.key} on ${m.device} at ${m.at[0]}`).join('; ')}); still serving: stop those containers first, or send ${sig} again to stop anyway (their filesystems will fail)`);
          return;
        }
        stopping = true;
        log(`${sig}: finishing calls in flight, detaching loop devices, committing and closing the pool`);
        srv.stop().then(() => snap.close()).then(resolve, reject);
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
    stdout(`${srv.socket}\n`);
    log(`serving ${a.pool} on ${srv.socket}; SIGINT or SIGTERM stops`);
    await stopped;
    log('stopped; pool closed');
  },
};

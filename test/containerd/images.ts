/** A small runnable image built by real tools: static busybox (Debian busybox-static), umoci, skopeo. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findTool } from '../../src/tools';

export const BUSYBOX = '/bin/busybox';
export const BUSYBOX_REF = 'thinsim.test/busybox:1';

export function imageToolsMissing(): string | undefined {
  for (const t of ['umoci', 'skopeo']) if (!findTool(t)) return `${t} is not installed (apt-get install umoci skopeo)`;
  if (!fs.existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  const file = execFileSync('file', ['-b', fs.realpathSync(BUSYBOX)], { encoding: 'utf8' });
  if (!/statically linked|static-pie/.test(file)) return `${BUSYBOX} is not static (apt-get install busybox-static)`;
  return undefined;
}

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** A docker-archive of one layer: /bin/busybox and its applets sh, echo, cat, ls, sleep, dd, sync. */
export function buildBusyboxArchive(work: string): string {
  const layout = path.join(work, 'oci');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:bb`]);
  const bundle = path.join(work, 'bundle');
  run('umoci', ['unpack', '--image', `${layout}:bb`, bundle]);
  const bin = path.join(bundle, 'rootfs', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const a of ['sh', 'echo', 'cat', 'ls', 'sleep', 'dd', 'sync']) fs.symlinkSync('busybox', path.join(bin, a));
  fs.mkdirSync(path.join(bundle, 'rootfs', 'tmp'), { mode: 0o1777 });
  run('umoci', ['repack', '--image', `${layout}:bb`, bundle]);
  const archive = path.join(work, 'busybox.tar');
  run('skopeo', ['copy', `oci:${layout}:bb`, `docker-archive:${archive}:${BUSYBOX_REF}`]);
  return archive;
}

/**
 * The private containerd (src/containerd/daemon.ts) against the real containerd, ctr and
 * runc: it starts on its own socket, lists the proxy snapshotters it was given, imports a
 * busybox-static image made by umoci and skopeo into the overlayfs snapshotter, runs a
 * container that prints, and stop() leaves no daemon, shim, mount or directory behind,
 * also with a container still running.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isThinError } from '../../src/errors';
import { containerdMissing, startContainerd, type PrivateContainerd } from '../../src/containerd/daemon';
import { mountsUnder } from '../../src/mounts/table';
import { findTool } from '../../src/tools';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));

function skipReason(): string | undefined {
  const m = containerdMissing();
  if (m) return m;
  const gone = ['umoci', 'skopeo'].filter((t) => !findTool(t));
  if (gone.length) return `needs ${gone.join(', ')} (apt-get install ${gone.join(' ')})`;
  if (!BUSYBOX) return 'needs a static busybox (apt-get install busybox-static)';
  const f = fs.readFileSync(BUSYBOX);
  // A dynamic ELF has a PT_INTERP naming its loader; the static build has none.
  if (f.includes(Buffer.from('/lib64/ld-linux'))) return `${BUSYBOX} is not statically linked (apt-get install busybox-static)`;
  return undefined;
}
const skip = skipReason();
if (skip) console.log(`# containerd daemon tests skipped: ${skip}`);

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** A one-layer image: static busybox as /bin/busybox, /bin/echo, /bin/sh, /bin/sleep. */
function busyboxArchive(work: string, tag: string): string {
  const layout = path.join(work, 'oci');
  const bundle = path.join(work, 'bundle');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:bb`]);
  run('umoci', ['unpack', '--image', `${layout}:bb`, bundle]);
  const bin = path.join(bundle, 'rootfs/bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync(BUSYBOX!, path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const l of ['echo', 'sh', 'sleep', 'cat']) fs.symlinkSync('busybox', path.join(bin, l));
  run('umoci', ['repack', '--image', `${layout}:bb`, bundle]);
  const archive = path.join(work, 'busybox.tar');
  run('skopeo', ['copy', '--quiet', `oci:${layout}:bb`, `docker-archive:${archive}:${tag}`]);
  return archive;
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
/** Processes whose command line names `needle` (shims name the daemon's socket). */
function processesNaming(needle: string): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try { return fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(needle); } catch { return false; } // gone meanwhile
  }).map(Number);
}

describe('containerd: missing programs', () => {
  it('names the Debian package of each program it cannot find', () => {
    const saved = process.env.PATH;
    process.env.PATH = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-empty-path-'));
    try {
      // containerd and ctr live in /usr/bin, which is now off PATH; runc is in /usr/sbin,
      // which findTool always searches.
      const why = containerdMissing();
      assert.ok(why, 'containerd off PATH must be reported');
      assert.match(why, /containerd, ctr, containerd-shim-runc-v2 not installed/);
      assert.match(why, /apt-get install containerd\b/);
    } finally {
      fs.rmdirSync(process.env.PATH!);
      process.env.PATH = saved;
    }
  });
});

describe('containerd: a private daemon', { skip }, () => {
  let work: string;
  let archive: string;
  let d: PrivateContainerd | undefined;
  const tag = 'docker.io/thinsim/busybox:daemon-test';
  const uniq = `${process.pid}-${Date.now().toString(36)}`;

  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-ctd-test-'));
    archive = busyboxArchive(work, tag);
  });
  after(async () => {
    await d?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('refuses a proxy plugin name containerd cannot use, before starting anything', async () => {
    await assert.rejects(startContainerd({ dir: work, proxyPlugins: [{ name: 'a b', address: '/x.sock' }] }), (e) => isThinError(e, 'E_INVALID') && /a b/.test(e.message));
    await assert.rejects(startContainerd({ dir: work, proxyPlugins: [{ name: 'thin', address: 'rel.sock' }] }), (e) => isThinError(e, 'E_INVALID') && /absolute/.test(e.message));
    assert.deepEqual(fs.readdirSync(work).filter((e) => e.startsWith('thinsim-containerd-')), []);
  });

  it('starts on its own socket, with the proxy snapshotter it was given', async () => {
    d = await startContainerd({ dir: work, proxyPlugins: [{ name: 'thinsim-test', address: path.join(work, 'nobody-listens.sock') }] });
    assert.ok(alive(d.pid));
    assert.ok(d.address.startsWith(d.dir + '/'));
    const v = await d.ctrOk(['version'], 'ctr version');
    assert.match(v, /Server:\s+Version:\s+\S+/);
    const plugins = await d.ctrOk(['plugins', 'ls'], 'ctr plugins ls');
    const snap = plugins.split('\n').filter((l) => l.startsWith('io.containerd.snapshotter.v1')).map((l) => l.split(/\s+/)[1]);
    assert.ok(snap.includes('overlayfs'), `overlayfs snapshotter loaded: ${snap}`);
    assert.ok(snap.includes('thinsim-test'), `proxy snapshotter listed: ${snap}`);
    assert.ok(!plugins.includes('io.containerd.grpc.v1.cri'), 'the CRI plugin is disabled');
  });

  it('imports a busybox image into overlayfs and runs a container that prints', async () => {
    assert.ok(d);
    await d.ctrOk(['image', 'import', '--snapshotter', 'overlayfs', archive], 'ctr image import', { timeoutMs: 120_000 });
    const images = await d.ctrOk(['images', 'ls', '-q'], 'ctr images ls');
    assert.deepEqual(images.split('\n').filter(Boolean), [tag]);
    const snaps = await d.ctrOk(['snapshots', '--snapshotter', 'overlayfs', 'ls'], 'ctr snapshots ls');
    assert.equal(snaps.trim().split('\n').length, 2, `one committed layer snapshot:\n${snaps}`);
    const r = await d.ctrOk(['run', '--rm', '--snapshotter', 'overlayfs', '--runc-root', d.runcRoot, tag, `echo-${uniq}`, '/bin/echo', 'hi'], 'ctr run', { timeoutMs: 120_000 });
    assert.equal(r, 'hi\n');
    // stdin reaches the container through ctr.
    // (ctr does not close the container's stdin at EOF, so the shell reads one line only.)
    const c = await d.ctrOk(['run', '--rm', '--snapshotter', 'overlayfs', '--runc-root', d.runcRoot, tag, `read-${uniq}`, '/bin/sh', '-c', 'read x; echo "got $x"'], 'ctr run sh', { timeoutMs: 60_000, input: 'through stdin\n' });
    assert.equal(c, 'got through stdin\n');
  });

  it('stop() with a container still running leaves no daemon, shim, mount or directory', async () => {
    assert.ok(d);
    await d.ctrOk(['run', '-d', '--snapshotter', 'overlayfs', '--runc-root', d.runcRoot, tag, `sleep-${uniq}`, '/bin/sleep', '600'], 'ctr run -d', { timeoutMs: 120_000 });
    const tasks = await d.ctrOk(['tasks', 'ls'], 'ctr tasks ls');
    assert.match(tasks, new RegExp(`sleep-${uniq}\\s+\\d+\\s+RUNNING`));
    assert.equal(processesNaming(d.address).length, 1, 'one shim serves the running container');
    assert.ok(mountsUnder(d.dir).length >= 1, 'the running container\'s rootfs is mounted under the daemon\'s dir');
    const { pid, dir, address } = d;
    await d.stop();
    await d.stop(); // idempotent
    d = undefined;
    assert.ok(!alive(pid), 'containerd has exited');
    assert.deepEqual(processesNaming(address), [], 'no shim is left');
    assert.deepEqual(mountsUnder(dir), [], 'nothing is mounted under its dir');
    assert.ok(!fs.existsSync(dir), 'its dir is removed');
  });
});

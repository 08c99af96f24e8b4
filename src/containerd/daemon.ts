/**
 * A private containerd: a containerd daemon of our own, for tests and benchmarks, beside
 * any system containerd (its own root, state, grpc and ttrpc sockets, runc root). Two
 * things containerd 1.6 keeps under /run/containerd whatever the config says: the shims'
 * sockets (/run/containerd/s/<hash of our address, namespace, id>, so never shared) and,
 * unless `ctr run --runc-root` says otherwise, runc's state (see ctr below).
 *
 * Contract:
 * - containerdMissing() says why a private containerd cannot run here (a program missing,
 *   naming the Debian package; not root; no overlay filesystem), or undefined.
 * - startContainerd() makes a fresh temporary directory (under `opts.dir`, default the
 *   system temp dir) holding config.toml (version 2), root/, state/, runc/, the grpc and
 *   ttrpc sockets and containerd.log; the CRI plugin and the snapshotters that need what
 *   we lack (aufs, btrfs, zfs, devmapper) are disabled; each proxy plugin becomes
 *   `[proxy_plugins.NAME] type = "snapshot"` at its address. It resolves once `ctr version`
 *   answers on the socket; a daemon that exits or does not answer within 30 s is stopped
 *   and the error carries the end of its log.
 * - ctr(args) runs `ctr --address <ours> ...args` through runTool (never throws: the
 *   status and output are in the result); ctrOk throws E_IO with ctr's words on failure.
 *   runc state and container cgroups are per container id: pass `--runc-root <runcRoot>`
 *   and use container ids unique to the run, so two private daemons never meet.
 * - stop() is idempotent: it force-deletes the tasks left in every namespace, SIGTERMs the
 *   daemon (SIGKILL after 10 s), kills shims still serving our address, unmounts
 *   everything under the directory (deepest first) and removes it. A mount that will not
 *   go is an error (E_IO) and the directory is then left in place, never removed through
 *   a mount. If the Node process exits without stop(), the daemon is killed with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ThinError } from '../errors';
import { mountsUnder } from '../mounts/table';
import { findTool, runTool, type RunResult } from '../tools';

export interface ProxyPlugin { name: string; address: string }

export interface StartOptions {
  /** The directory to make the daemon's temporary directory in (default: os.tmpdir()). */
  dir?: string;
  /** Snapshotters served by another process over gRPC (containerd's proxy plugins). */
  proxyPlugins?: ProxyPlugin[];
}

export interface CtrOptions { timeoutMs?: number; input?: string }

export interface PrivateContainerd {
  /** The grpc socket (ctr --address). */
  address: string;
  root: string;
  state: string;
  /** The temporary directory holding everything; removed by stop(). */
  dir: string;
  /** A runc root for `ctr run --runc-root`, private to this daemon. */
  runcRoot: string;
  /** The daemon's log (stdout and stderr). */
  log: string;
  pid: number;
  ctr(args: string[], opts?: CtrOptions): Promise<RunResult>;
  ctrOk(args: string[], what: string, opts?: CtrOptions): Promise<string>;
  stop(): Promise<void>;
}

/** Which Debian package provides each program a private containerd needs. */
const PROGRAMS: Record<string, string> = {
  containerd: 'containerd', ctr: 'containerd', 'containerd-shim-runc-v2': 'containerd', runc: 'runc',
};

/** Why a private containerd cannot run here, or undefined when it can. */
export function containerdMissing(): string | undefined {
  const gone = Object.keys(PROGRAMS).filter((p) => !findTool(p));
  if (gone.length) {
    const pkgs = [...new Set(gone.map((p) => PROGRAMS[p]))];
    return `${gone.join(', ')} not installed: install the Debian package${pkgs.length > 1 ? 's' : ''} ${pkgs.join(' ')} (apt-get install ${pkgs.join(' ')})`;
  }
  if (process.getuid?.() !== 0) return 'needs root (containerd mounts snapshots, runc creates namespaces and cgroups)';
  let fsList = '';
  try { fsList = fs.readFileSync('/proc/filesystems', 'utf8'); } catch { /* reported below as no overlay */ }
  if (!/\toverlay$/m.test(fsList)) return 'the kernel has no overlay filesystem (modprobe overlay), which the overlayfs snapshotter needs';
  return undefined;
}

const DISABLED = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
];
/** A TOML basic string: JSON's escapes are TOML's for what we write. */
const q = (s: string) => JSON.stringify(s);
/** sun_path holds 108 bytes with its NUL; ".ttrpc" is appended to the grpc socket. */
const MAX_SOCKET = 100;

function configToml(root: string, state: string, address: string, plugins: readonly ProxyPlugin[]): string {
  const lines = [
    'version = 2',
    `root = ${q(root)}`,
    `state = ${q(state)}`,
    `disabled_plugins = [${DISABLED.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(address)}`,
    '[ttrpc]',
    `  address = ${q(`${address}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
  ];
  for (const p of plugins) lines.push('', `[proxy_plugins.${q(p.name)}]`, '  type = "snapshot"', `  address = ${q(p.address)}`);
  return lines.join('\n') + '\n';
}

function checkPlugins(plugins: readonly ProxyPlugin[]): void {
  const seen = new Set<string>();
  for (const p of plugins) {
    if (!/^[A-Za-z0-9_.-]+$/.test(p.name)) throw new ThinError('E_INVALID', `proxy plugin name ${JSON.stringify(p.name)} is not usable as a snapshotter name: use letters, digits, '_', '.' or '-'`, { name: p.name });
    if (seen.has(p.name)) throw new ThinError('E_INVALID', `proxy plugin ${p.name} is given twice: give each snapshotter one address`, { name: p.name });
    seen.add(p.name);
    if (!path.isAbsolute(p.address)) throw new ThinError('E_INVALID', `proxy plugin ${p.name}: address ${JSON.stringify(p.address)} is not an absolute socket path: give the unix socket's full path`, { name: p.name, address: p.address });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(file: string, bytes = 3000): string {
  try {
    const t = fs.readFileSync(file, 'utf8');
    return t.slice(-bytes).trim();
  } catch (e) {
    return `(no log: ${(e as Error).message})`;
  }
}

/** Pids of containerd shims serving `address` (their command line names it). */
function shimsOf(address: string): number[] {
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try { argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0'); } catch { continue; } // the process has gone
    if (!path.basename(argv[0] ?? '').startsWith('containerd-shim')) continue;
    const i = argv.indexOf('-address');
    if (i >= 0 && argv[i + 1] === address) pids.push(Number(e));
  }
  return pids;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([exited(child).then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms); })]);
  clearTimeout(timer);
  return done;
}

/** Start a private containerd; see the contract above. */
export async function startContainerd(opts: StartOptions = {}): Promise<PrivateContainerd> {
  const why = containerdMissing();
  if (why) throw new ThinError('E_UNSUPPORTED', `cannot start a private containerd: ${why}`, {});
  const plugins = opts.proxyPlugins ?? [];
  checkPlugins(plugins);
  const parent = path.resolve(opts.dir ?? os.tmpdir());
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'thinsim-containerd-'));
  const address = path.join(dir, 'containerd.sock');
  if (Buffer.byteLength(`${address}.ttrpc`) > MAX_SOCKET) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new ThinError('E_INVALID', `the containerd socket path ${address}.ttrpc is longer than a unix socket allows (${MAX_SOCKET} bytes): give a shorter dir`, { dir: parent });
  }
  const root = path.join(dir, 'root');
  const state = path.join(dir, 'state');
  const runcRoot = path.join(dir, 'runc');
  const log = path.join(dir, 'containerd.log');
  const config = path.join(dir, 'config.toml');
  fs.mkdirSync(runcRoot);
  fs.writeFileSync(config, configToml(root, state, address, plugins));
  const logFd = fs.openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(findTool('containerd')!, ['--config', config], { stdio: ['ignore', logFd, logFd] });
  } finally {
    fs.closeSync(logFd); // the child holds its own copy
  }
  let spawnError: Error | undefined;
  child.on('error', (e) => { spawnError = e; });
  const killOnExit = () => { child.kill('SIGKILL'); };
  process.on('exit', killOnExit);

  const ctrPath = findTool('ctr')!;
  const ctr = (args: string[], o: CtrOptions = {}) => runTool(ctrPath, ['--address', address, ...args], o.timeoutMs ?? 300_000, o.input);
  const ctrOk = async (args: string[], what: string, o: CtrOptions = {}) => {
    const r = await ctr(args, o);
    if (r.status !== 0) throw new ThinError('E_IO', `${what}: ctr ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`, { address, args });
    return r.stdout;
  };

  let stopped: Promise<void> | undefined;
  const stopOnce = async (): Promise<void> => {
    const problems: string[] = [];
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      // Tasks left running keep shims and mounts alive after the daemon goes.
      const ns = await ctr(['namespaces', 'ls', '-q'], { timeoutMs: 30_000 });
      for (const n of ns.status === 0 ? ns.stdout.split('\n').filter(Boolean) : []) {
        const tasks = await ctr(['-n', n, 'tasks', 'ls', '-q'], { timeoutMs: 30_000 });
        for (const id of tasks.status === 0 ? tasks.stdout.split('\n').filter(Boolean) : []) {
          const r = await ctr(['-n', n, 'tasks', 'delete', '--force', id], { timeoutMs: 30_000 });
          if (r.status !== 0) problems.push(`task ${n}/${id} not deleted: ${r.stderr.trim()}`);
        }
      }
      child.kill('SIGTERM');
      if (!(await waitExit(child, 10_000))) {
        child.kill('SIGKILL');
        await waitExit(child, 10_000);
      }
    }
    process.removeListener('exit', killOnExit);
    for (const pid of shimsOf(address)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* it exited meanwhile */ }
    }
    for (const mp of mountsUnder(dir)) { // deepest first
      const r = await runTool(findTool('umount') ?? 'umount', [mp], 60_000);
      if (r.status !== 0) problems.push(`${mp} not unmounted: ${r.stderr.trim()}`);
    }
    const left = mountsUnder(dir);
    if (left.length) {
      throw new ThinError('E_IO', `private containerd at ${dir}: ${left.length} mount(s) left, so the directory was kept: ${left.join(', ')}; ${problems.join('; ')}; unmount them and remove ${dir}`, { dir, mounts: left });
    }
    fs.rmSync(dir, { recursive: true, force: true });
    if (problems.length) throw new ThinError('E_IO', `private containerd at ${dir} stopped, but: ${problems.join('; ')}`, { dir });
  };
  const stop = () => (stopped ??= stopOnce());

  /** The start failed: stop what there is; the error says both what failed and what stop() could not undo. */
  const failStart = async (message: string): Promise<ThinError> => {
    try {
      await stop();
    } catch (e) {
      return new ThinError('E_IO', `${message}\nand stopping it failed: ${(e as Error).message}`, { dir });
    }
    return new ThinError('E_IO', message, { dir });
  };
  const deadline = Date.now() + 30_000;
  let last: RunResult | undefined;
  for (;;) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) {
      const msg = spawnError ? String(spawnError) : `exited ${child.exitCode ?? child.signalCode}`;
      throw await failStart(`private containerd did not start (${msg}); its log ends:\n${tail(log)}`);
    }
    if (fs.existsSync(address)) {
      last = await ctr(['version'], { timeoutMs: 5_000 });
      if (last.status === 0) break;
    }
    if (Date.now() > deadline) {
      throw await failStart(`private containerd did not answer on ${address} within 30 s (${last ? last.stderr.trim() : 'no socket'}); its log ends:\n${tail(log)}`);
    }
    await sleep(50);
  }
  return { address, root, state, dir, runcRoot, log, pid: child.pid!, ctr, ctrOk, stop };
}

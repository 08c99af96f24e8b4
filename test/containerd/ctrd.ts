/**
 * A private containerd for the tests: root, state and socket under a temporary
 * directory, with proxy snapshotter plugins. The shape of src/containerd/daemon.ts
 * (written by another engineer); the tests move onto it once it is on main.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findTool, runTool, type RunResult } from '../../src/tools';

export function containerdMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'containerd needs root';
  for (const t of ['containerd', 'ctr', 'runc']) if (!findTool(t)) return `${t} is not installed (apt-get install containerd runc)`;
  return undefined;
}

export interface Containerd {
  address: string; root: string; state: string; dir: string;
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startContainerd(opts: { dir: string; proxyPlugins?: Array<{ name: string; address: string }> }): Promise<Containerd> {
  const dir = opts.dir;
  fs.mkdirSync(dir, { recursive: true });
  const root = path.join(dir, 'root');
  const state = path.join(dir, 'state');
  const address = path.join(dir, 'containerd.sock');
  const plugins = (opts.proxyPlugins ?? []).map((p) => `[proxy_plugins.${p.name}]\n  type = "snapshot"\n  address = ${JSON.stringify(p.address)}\n`).join('');
  const config = path.join(dir, 'config.toml');
  fs.writeFileSync(config, `version = 2\nroot = ${JSON.stringify(root)}\nstate = ${JSON.stringify(state)}\n[grpc]\n  address = ${JSON.stringify(address)}\n[ttrpc]\n  address = ${JSON.stringify(address + '.ttrpc')}\n${plugins}`);
  const log = fs.openSync(path.join(dir, 'containerd.log'), 'a');
  const child: ChildProcess = spawn(findTool('containerd')!, ['--config', config], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const ctr = (args: string[], o: { timeoutMs?: number } = {}) => runTool(findTool('ctr')!, ['-a', address, ...args], o.timeoutMs ?? 300_000);
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`containerd exited ${child.exitCode}: ${fs.readFileSync(path.join(dir, 'containerd.log'), 'utf8').slice(-2000)}`);
    if (fs.existsSync(address) && (await ctr(['version'], { timeoutMs: 10_000 })).status === 0) break;
    if (i > 300) throw new Error('containerd did not answer within 30 s');
    await sleep(100);
  }
  return {
    address, root, state, dir, ctr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

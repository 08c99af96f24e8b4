/** `thinsim snapshotter` as a child process (the real CLI: options, socket, signals). */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'thinsim.js');

export interface SnapshotterProcess {
  socket: string;
  child: ChildProcess;
  stderr(): string;
  /** How it ended, once it has; undefined if it is still running after `ms`. */
  exited(ms: number): Promise<{ code: number | null; signal: string | null } | undefined>;
  /** SIGTERM (or `signal`), resolve with how it ended. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: string | null }>;
}

/** Start `thinsim snapshotter`; `preload`: modules for node's --require (the crash hook). */
export async function startSnapshotterProcess(pool: string, socket: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, preload: string[] = []): Promise<SnapshotterProcess> {
  const child = spawn(process.execPath, [...preload.flatMap((m) => ['--require', m]), BIN, 'snapshotter', pool, '--address', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const ended = new Promise<{ code: number | null; signal: string | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; if (out.includes('\n')) resolve(); });
    void ended.then((e) => reject(new Error(`thinsim snapshotter exited (${e.code ?? e.signal}) before serving: ${err}`)));
  });
  return {
    socket: out.trim(), child, stderr: () => err,
    exited: (ms: number) => Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]),
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return ended;
    },
  };
}

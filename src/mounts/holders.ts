/**
 * Who holds a mounted tree: the processes whose open files, working directory, root or
 * memory maps lie under a path (what fuser -m tells), read from /proc.
 *
 * Contract: best effort over the processes this one may inspect (root sees all); a
 * process that vanishes while being read is skipped. Never throws.
 */
import * as fs from 'node:fs';

export interface Holder { pid: number; command: string; how: string[] }

function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir + '/');
}

function link(p: string): string | undefined {
  try { return fs.readlinkSync(p); } catch { return undefined; } // gone or not ours to read: skipped
}

/** Processes using anything under `dir`, this process included. */
export function holdersOf(dir: string): Holder[] {
  const out: Holder[] = [];
  let pids: string[];
  try { pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)); } catch { return out; } // no /proc: nothing to tell
  for (const pid of pids) {
    const how: string[] = [];
    for (const [what, p] of [['cwd', 'cwd'], ['root', 'root']] as const) {
      const t = link(`/proc/${pid}/${p}`);
      if (t && under(t, dir)) how.push(what);
    }
    let fds: string[] = [];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { /* gone or not ours */ }
    for (const fd of fds) {
      const t = link(`/proc/${pid}/fd/${fd}`);
      if (t && under(t, dir)) { how.push(`open ${t}`); break; }
    }
    if (how.length) {
      let command = '?';
      try { command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { /* gone */ }
      out.push({ pid: Number(pid), command, how });
    }
  }
  return out;
}

export function describeHolders(hs: Holder[]): string {
  return hs.map((h) => `pid ${h.pid} (${h.command}: ${h.how.join(', ')})`).join('; ');
}

/**
 * What experiments learn from the host, measured with the host's own tools: the
 * machine (CPU, cores, memory, kernel, filesystem), tool versions, a file's
 * allocation (stat), extent count (filefrag), page-cache residency (fincore),
 * /proc/meminfo and /proc/vmstat counters, dropping a file's cached pages, and
 * loop block devices (losetup).
 *
 * Contract:
 * - Nothing here guesses: a tool that is missing or fails gives `undefined` (and
 *   `toolMissing` says why), a /proc counter that is missing gives NaN, never a made-up
 *   number; `fileSpace` of a missing file throws. Programs run through tools.ts's
 *   synchronous runner (`run`): experiments probe the host while serving no mount.
 * - `dropFileCache` uses `dd if=FILE iflag=nocache count=0`, which asks the kernel
 *   (posix_fadvise POSIX_FADV_DONTNEED) to drop the clean cached pages of that one
 *   file; call it after a sync, since dirty pages stay. It does not touch other
 *   tenants' caches the way /proc/sys/vm/drop_caches would.
 * - Loop devices made by `attachLoop` (over a backing file, for a direct-lvm pool on a
 *   block device; thin devices as block devices belong to src/mounts) must be given back
 *   with `detachLoop`, which throws E_IO when losetup fails.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ThinError } from '../errors';
import { findTool, runToolSync } from '../tools';
import { VERSION } from '../version';

export interface ToolRun {
  ok: boolean;
  stdout: string;
  stderr: string;
  error?: string;
}

/** A probe of the host through tools.ts's synchronous runner (an experiment serves no mount while probing). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): ToolRun {
  const r = runToolSync(cmd, args, opts.timeoutMs ?? 120_000);
  if (r.status === null) return { ok: false, stdout: r.stdout, stderr: '', error: r.stderr };
  return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr, error: r.status === 0 ? undefined : `${cmd} exited ${r.status}: ${r.stderr.trim().split('\n').slice(-1)[0]}` };
}

/** The absolute path of a program (tools.ts's findTool: PATH, then the sbin directories). */
export const which = findTool;

export function toolMissing(cmd: string, pkg: string): string | undefined {
  return which(cmd) ? undefined : `${cmd} is not installed (Debian package ${pkg})`;
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

// ------------------------------------------------------------------ the machine

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  os: string;
  node: string;
  thinsim: string;
  /** Filesystem type of the directory the experiment's files live in (from df -T or /proc/mounts). */
  filesystem: string;
  workDir: string;
}

export function machineInfo(workDir: string): MachineInfo {
  const cpus = os.cpus();
  let filesystem = 'unknown';
  const df = run('df', ['--output=fstype', workDir]);
  if (df.ok) filesystem = df.stdout.trim().split('\n').slice(-1)[0].trim();
  let osName = `${os.type()} ${os.release()}`;
  try {
    const m = /PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (m) osName = m[1];
  } catch { /* keep uname */ }
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown', cores: cpus.length, memoryBytes: os.totalmem(),
    kernel: os.release(), os: osName, node: process.version, thinsim: VERSION, filesystem, workDir,
  };
}

/** `tool --version` (first line) for each tool present; absent tools are left out. */
export function toolVersions(tools: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tools) {
    if (!which(t)) continue;
    const flag = t === 'thin_metadata_size' ? '-V' : t === 'filefrag' ? '-V' : '--version';
    const r = run(t, [flag]);
    const line = (r.stdout || r.stderr).trim().split('\n')[0];
    if (line) out[t] = line;
  }
  return out;
}

// ------------------------------------------------------------------ files on the host

export interface FileSpace {
  /** st_size: what the file claims. */
  apparentBytes: number;
  /** st_blocks * 512: what the host filesystem really allocated. */
  allocatedBytes: number;
}

export function fileSpace(p: string): FileSpace {
  const st = fs.statSync(p);
  return { apparentBytes: st.size, allocatedBytes: st.blocks * 512 };
}

/** Extent count from `filefrag` (e2fsprogs); undefined when filefrag is missing or fails. */
export function extentCount(p: string): number | undefined {
  if (!which('filefrag')) return undefined;
  const r = run('filefrag', [p]);
  const m = /:\s+(\d+) extents? found/.exec(r.stdout);
  return r.ok && m ? Number(m[1]) : undefined;
}

/** Bytes of `p` resident in the page cache, from `fincore` (util-linux). */
export function cachedBytes(p: string): number | undefined {
  if (!which('fincore')) return undefined;
  const r = run('fincore', ['--json', '--bytes', p]);
  if (!r.ok) return undefined;
  try {
    const j = JSON.parse(r.stdout) as { fincore: { res: number | string }[] };
    return Number(j.fincore[0].res);
  } catch {
    return undefined;
  }
}

/** Drop the clean cached pages of one file or block device (see the contract). */
export function dropFileCache(p: string): ToolRun {
  return run('dd', [`if=${p}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/** A few /proc/meminfo fields, in bytes. */
export function meminfo(): { cached: number; dirty: number; writeback: number } {
  const text = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { cached: kb('Cached'), dirty: kb('Dirty'), writeback: kb('Writeback') };
}

/** /proc/vmstat nr_written: pages the kernel has written back from the page cache since boot. */
export function pagesWrittenBack(): number {
  const m = /^nr_written (\d+)$/m.exec(fs.readFileSync('/proc/vmstat', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const PAGE_SIZE = 4096;

// ------------------------------------------------------------------ loop devices

/** Why a loop block device cannot be made here, or undefined when it can. */
export function loopUnavailable(): string | undefined {
  if (!isRoot()) return 'a loop block device needs root (losetup)';
  return toolMissing('losetup', 'mount');
}

/** Attach `file` to a free loop device with direct I/O on the backing file (losetup --direct-io=on). */
export function attachLoop(file: string): string {
  const r = run('losetup', ['-f', '--show', '--direct-io=on', file]);
  if (!r.ok) throw new ThinError('E_IO', `losetup -f --show ${file}: ${r.error}`);
  return r.stdout.trim();
}

export function detachLoop(dev: string): void {
  const r = run('losetup', ['-d', dev]);
  if (!r.ok) throw new ThinError('E_IO', `losetup -d ${dev}: ${r.error}; detach it by hand (losetup -d ${dev})`);
}

export function mkTemp(parent: string, prefix: string): string {
  fs.mkdirSync(parent, { recursive: true });
  return fs.mkdtempSync(path.join(parent, prefix));
}

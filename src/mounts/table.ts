/**
 * The kernel's mount table and loop devices, as this process sees them.
 *
 * Contract: an unreadable mount table is an E_IO error, never "nothing mounted" (a caller
 * that then removed a directory could empty a mounted filesystem). Paths come back
 * unescaped (\040 -> space, \011, \012, \134).
 */
import * as fs from 'node:fs';
import { ioError } from '../errors';

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountEntry { source: string; target: string; type: string; options: string }

export function mountTable(): MountEntry[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch (e) {
    throw ioError('read the mount table', '/proc/self/mounts', e);
  }
  return text.split('\n').filter(Boolean).map((l) => {
    const [source, target, type, options] = l.split(' ');
    return { source: unescape(source), target: unescape(target ?? ''), type: type ?? '', options: options ?? '' };
  });
}

/** Mount points at or under `dir`, deepest first (the order to unmount them in). */
export function mountsUnder(dir: string): string[] {
  return mountTable().map((m) => m.target).filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/** The loop devices whose backing file is `file` (from /sys/block/loop*). */
export function loopsBackedBy(file: string): string[] {
  let names: string[] = [];
  try { names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop')); } catch { return []; } // no sysfs: no loop devices to find
  const out: string[] = [];
  for (const n of names) {
    let back = '';
    try { back = fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim(); } catch { continue; } // not attached
    if (back === file || back === `${file} (deleted)`) out.push(`/dev/${n}`);
  }
  return out;
}

/**
 * A path inside a layer's tree, with the tree's root as `/`: the one resolver of symlinks
 * for the layer applier (apply.ts) and the tree operations (tree-ops.ts), as Docker's
 * chrooted applier and a container see the tree.
 *
 * Contract: an absolute symlink target starts again at the root and `..` stops at it, so
 * nothing resolves outside the root; more than 40 symlinks is E_INVALID (the kernel's
 * ELOOP). With `make`, missing directories on the way are made (0755) and a component
 * that is not a directory is E_INVALID; without it, past a missing component the rest is
 * taken as written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';

/** Resolve `rel` under `root`; `followLast`: resolve a symlink in the last component too. */
export function resolveInRoot(root: string, rel: string, followLast = true, opts: { make?: boolean; what?: string } = {}): string {
  let todo = rel.split('/').filter((p) => p && p !== '.');
  const cur: string[] = [];
  let hops = 0;
  while (todo.length) {
    const p = todo.shift()!;
    if (p === '..') { cur.pop(); continue; }
    const host = path.join(root, ...cur, p);
    const st = lstatIn(host);
    if (st?.isSymbolicLink() && (todo.length > 0 || followLast || opts.make)) {
      if (++hops > 40) throw new ThinError('E_INVALID', `too many symlinks resolving "${rel}" in the layer`, { kind: 'unsafe_path', path: rel });
      const target = fs.readlinkSync(host);
      if (target.startsWith('/')) cur.length = 0;
      todo = [...target.split('/').filter((q) => q && q !== '.'), ...todo];
      continue;
    }
    if (opts.make) {
      if (!st) fs.mkdirSync(host, { mode: 0o755 });
      else if (!st.isDirectory()) throw new ThinError('E_INVALID', `cannot ${opts.what ?? 'use'} "${rel}": "${path.posix.join(...cur, p)}" is not a directory in the tree below`, { path: rel });
      cur.push(p);
      continue;
    }
    cur.push(p);
    if (!st) {
      for (const q of todo) if (q === '..') cur.pop(); else cur.push(q);
      break;
    }
  }
  return path.join(root, ...cur);
}

/** lstat, or undefined when nothing is there (or a component on the way is not a directory). */
export function lstatIn(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/**
 * Where in a tree an error was found, as thin-provisioning-tools reports it:
 * "path: [dev 1, key 42], blocks 3 -> 17 -> 25", the keys looked up at each level
 * and the blocks from the top root down to the failing node.
 *
 * Contract: annotation happens only after something threw (catch-and-annotate at
 * the descent), so the fast paths pay nothing. It re-walks the tree read-only from
 * the root to the failing block (its nodes above it were read fine moments ago);
 * the walk itself never throws. Only errors about the tree's blocks get a path
 * (E_CHECKSUM, E_CORRUPT, E_INVARIANT, E_IO naming a block); others pass through
 * unchanged. The annotated error keeps its code and details and adds
 * `details.path` (the text above), `details.pathKeys`, `details.pathBlocks` and,
 * for a "dev" key, `details.device`; the original error is its `cause`.
 */
import { ThinError, ThinErrorCode } from '../../errors';
import { btreeNodeValidator, isLeaf, MAX_BTREE_DEPTH, nrEntries, searchLe, value64 } from './node';
import type { TreeCore } from './spine';

/** One key of a path, with what it names ("dev", "key"). */
export interface PathKey {
  label: string;
  key: number;
}

const LOCATED: ReadonlySet<ThinErrorCode> = new Set<ThinErrorCode>(['E_CHECKSUM', 'E_CORRUPT', 'E_INVARIANT', 'E_IO']);
/** Internal nodes a search for the failing block reads at most (it is only a report). */
const SEARCH_BUDGET = 100_000;

/**
 * Annotate `e`, thrown while working on the tree at `root` (looking for `key` when
 * given), with the path to the block it names. Returns what to throw.
 */
export function locate<V>(t: TreeCore<V>, e: unknown, root: number, key?: number): unknown {
  if (!(e instanceof ThinError) || !LOCATED.has(e.code) || e.details.pathBlocks !== undefined) return e;
  const failing = typeof e.details.block === 'number' ? e.details.block : undefined;
  const blocks = failing === undefined ? [root] : blocksTo(t, root, failing, key);
  return annotate(e, key === undefined ? [] : [{ label: t.keyLabel, key }], blocks);
}

/**
 * An error already located in a lower tree, reached through an upper tree at
 * `root` by `key`: put the upper key and the upper blocks down to the leaf that
 * holds `key` in front of its path.
 */
export function locateBelow<V>(t: TreeCore<V>, e: unknown, root: number, key: number): unknown {
  if (!(e instanceof ThinError) || !LOCATED.has(e.code)) return e;
  const below = e.details.pathBlocks as number[] | undefined;
  if (below === undefined) return locate(t, e, root, key);
  const upper = blocksTo(t, root, -1, key);
  const keys = [{ label: t.keyLabel, key }, ...((e.details.pathKeys as PathKey[] | undefined) ?? [])];
  return annotate(e, keys, [...upper, ...below]);
}

function annotate(e: ThinError, keys: PathKey[], blocks: number[]): ThinError {
  const reason = typeof e.details.reason === 'string' ? e.details.reason : e.message;
  const path = `[${keys.map((k) => `${k.label} ${k.key}`).join(', ')}], blocks ${blocks.join(' -> ')}`;
  const dev = keys.find((k) => k.label === 'dev');
  const details = { ...e.details, reason, path, pathKeys: keys, pathBlocks: blocks, ...(dev ? { device: dev.key } : {}) };
  return new ThinError(e.code, `${reason}; path: ${path}`, details, { cause: e.details.reason === undefined ? e : e.cause });
}

/**
 * Blocks from `root` down to `failing`: along the search path for `key` when one is
 * given (a failing block of -1 means "to the leaf"), else (or when the key's path
 * does not lead there) by searching the internal nodes. Ends with `failing` even when
 * it cannot be reached.
 */
function blocksTo<V>(t: TreeCore<V>, root: number, failing: number, key?: number): number[] {
  if (key !== undefined) {
    const out: number[] = [];
    let b = root;
    for (let depth = 0; depth <= MAX_BTREE_DEPTH; depth++) {
      out.push(b);
      if (b === failing) return out;
      const d = tryRead(t, b);
      if (d === undefined || isLeaf(d)) break;
      const n = nrEntries(d);
      const i = Math.max(0, searchLe(d, n, key));
      const child = tryChild(d, i);
      if (child === undefined) break;
      // A sibling of the path (moved into, merged with) fails as often as the path itself.
      for (let j = 0; j < n && failing >= 0; j++) if (j !== i && tryChild(d, j) === failing) return [...out, failing];
      b = child;
    }
    if (failing < 0) return out;
  }
  const found = search(t, root, failing, { left: SEARCH_BUDGET }, 0);
  return found ?? (root === failing ? [root] : [root, failing]);
}

/** Depth-first through internal nodes only: leaves sit at one depth, so a node whose first child is a leaf ends the search below it. */
function search<V>(t: TreeCore<V>, b: number, failing: number, budget: { left: number }, depth: number): number[] | undefined {
  if (b === failing) return [b];
  if (depth > MAX_BTREE_DEPTH || budget.left-- <= 0) return undefined;
  const d = tryRead(t, b);
  if (d === undefined || isLeaf(d)) return undefined;
  const n = nrEntries(d);
  for (let i = 0; i < n; i++) if (tryChild(d, i) === failing) return [b, failing];
  const first = tryChild(d, 0);
  const firstNode = first === undefined ? undefined : tryRead(t, first);
  if (firstNode === undefined || isLeaf(firstNode)) return undefined;
  for (let i = 0; i < n; i++) {
    const c = tryChild(d, i);
    const below = c === undefined ? undefined : search(t, c, failing, budget, depth + 1);
    if (below) return [b, ...below];
  }
  return undefined;
}

function tryRead<V>(t: TreeCore<V>, b: number): Uint8Array | undefined {
  try {
    return t.tm.read(b, btreeNodeValidator);
  } catch {
    return undefined;
  }
}

function tryChild(d: Uint8Array, i: number): number | undefined {
  try {
    return value64(d, i);
  } catch {
    return undefined;
  }
}

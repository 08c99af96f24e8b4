/**
 * Multi-level btree: N btrees stacked, where a value of level l < N-1 is the root of a
 * level l+1 tree (the kernel's dm_btree with info->levels = N; dm-thin's mapping tree
 * is N = 2: device id -> root of that device's tree, virtual block -> block_time).
 *
 * Shape chosen here: one ordinary BTree per level. Inner levels store u64 subtree
 * roots with `blockRefValue`, whose inc/dec are metadata reference counts and whose
 * dec deletes the subtree when its last reference goes; the last level stores the
 * caller's value type. A path of keys names one value.
 *
 * Contract: the same as BTree (functional on the top root; the caller owns one
 * reference to it). A mutation below level 0 shadows the path level by level from the
 * top root, writing each new lower root into its (already shadowed) upper leaf slot
 * with no extra inc/dec, exactly as the kernel's single spine does; so a lower tree
 * reached through a shared upper node is copied, never changed in place.
 * Hot paths (dm-thin's mapping inserts) split that into `shadowPath` once, then many
 * operations on `leafTree` against the subtree root, then `relink` if that root moved;
 * the path stays writable for the rest of the transaction.
 * Cost: the sum over levels of a single-level operation.
 * Errors: one from a lower level names the whole path, upper keys first, with the
 * upper levels' blocks down to the leaf that holds each key ("[dev 1, key 42],
 * blocks 3 -> 17 -> 25"); `labels` names what each level's key is.
 */
import { ThinError } from '../../errors';
import type { TransactionManager } from '../transaction-manager';
import { BTree } from './btree';
import { locateBelow } from './error-path';
import { blockRefValue, ValueType } from './value-type';

export class MultiLevelBTree<V> {
  readonly levels: number;
  readonly tm: TransactionManager;
  /** trees[l] reads and writes level l; all but the last hold subtree roots. */
  private readonly trees: BTree<unknown>[];

  constructor(tm: TransactionManager, levels: number, leafType: ValueType<V>, labels: readonly string[] = []) {
    if (!Number.isInteger(levels) || levels < 1) throw new ThinError('E_INVALID', `a multi-level btree needs at least one level, got ${levels}`);
    this.tm = tm;
    this.levels = levels;
    const trees: BTree<unknown>[] = new Array(levels);
    trees[levels - 1] = new BTree<V>(tm, leafType, { keyLabel: labels[levels - 1] }) as BTree<unknown>;
    for (let l = levels - 2; l >= 0; l--) trees[l] = new BTree<number>(tm, blockRefValue(tm, trees[l + 1]), { keyLabel: labels[l] }) as BTree<unknown>;
    this.trees = trees;
  }

  /** The btree for level `l` (inner levels: values are subtree roots). */
  level(l: number): BTree<number> {
    if (l < 0 || l >= this.levels - 1) throw new ThinError('E_INVALID', `inner level must be 0..${this.levels - 2}, got ${l}`);
    return this.trees[l] as BTree<number>;
  }

  /** The btree of the last level (the caller's values). */
  get leafTree(): BTree<V> {
    return this.trees[this.levels - 1] as BTree<V>;
  }

  /** A new empty top-level tree. */
  empty(): number {
    return this.trees[0].empty();
  }

  lookup(root: number, keys: readonly number[]): V | undefined {
    try {
      this.checkPath(keys, this.levels);
      let r = root;
      for (let l = 0; l < this.levels - 1; l++) {
        const next = (this.trees[l] as BTree<number>).lookup(r, keys[l]);
        if (next === undefined) return undefined;
        r = next;
      }
      return this.leafTree.lookup(r, keys[this.levels - 1]);
    } catch (e) {
      throw this.located(e, root, keys);
    }
  }

  /** Root of the tree at level prefix.length under the path `prefix`, if present. */
  subtree(root: number, prefix: readonly number[]): number | undefined {
    try {
      this.checkPrefix(prefix);
      let r: number | undefined = root;
      for (let l = 0; l < prefix.length && r !== undefined; l++) r = (this.trees[l] as BTree<number>).lookup(r, prefix[l]);
      return r;
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /**
   * Insert or overwrite the value at `keys`, creating empty lower trees for absent
   * upper keys. Returns the new top root.
   */
  insert(root: number, keys: readonly number[], value: V): number {
    try {
      this.checkPath(keys, this.levels);
      return this.insertAt(0, root, keys, value);
    } catch (e) {
      throw this.located(e, root, keys);
    }
  }

  /**
   * Make `subRoot` the tree under path `prefix` (e.g. a snapshot: tm.inc the origin's
   * root, then insert it under the new id). The tree takes over the caller's reference
   * to `subRoot`; a tree already there is released.
   */
  insertSubtree(root: number, prefix: readonly number[], subRoot: number): number {
    try {
      this.checkPrefix(prefix);
      return this.insertSubAt(0, root, prefix, subRoot);
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /** Remove the value at `keys` (released with the leaf type's dec). Lower trees left empty stay. */
  remove(root: number, keys: readonly number[]): { root: number; value: V | undefined } {
    try {
      this.checkPath(keys, this.levels);
      if (this.lookup(root, keys) === undefined) return { root, value: undefined };
      let value: V | undefined;
      const rec = (l: number, r: number): number => {
        if (l === this.levels - 1) {
          const res = this.leafTree.remove(r, keys[l]);
          value = res.value;
          return res.root;
        }
        return (this.trees[l] as BTree<number>).modify(r, keys[l], (sub) => rec(l + 1, sub))!;
      };
      return { root: rec(0, root), value };
    } catch (e) {
      throw this.located(e, root, keys);
    }
  }

  /** Remove the last-level keys in [from, to) under path `prefix` (length levels-1). */
  removeRange(root: number, prefix: readonly number[], from: number, to: number): { root: number; removed: number } {
    try {
      if (prefix.length !== this.levels - 1) throw new ThinError('E_INVALID', `removeRange needs a path of ${this.levels - 1} keys, got ${prefix.length}`);
      this.checkPath(prefix, prefix.length);
      const sub = this.levels === 1 ? root : this.subtree(root, prefix);
      if (sub === undefined) return { root, removed: 0 };
      const first = this.leafTree.lookupGe(sub, from);
      if (first === undefined || first[0] >= to) return { root, removed: 0 };
      let removed = 0;
      const rec = (l: number, r: number): number => {
        if (l === this.levels - 1) {
          const res = this.leafTree.removeRange(r, from, to);
          removed = res.removed;
          return res.root;
        }
        return (this.trees[l] as BTree<number>).modify(r, prefix[l], (s) => rec(l + 1, s))!;
      };
      const newRoot = rec(0, root);
      return { root: newRoot, removed };
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /**
   * Remove the whole tree under path `prefix` (device delete): the upper entry goes and
   * the subtree loses one reference (freed when it was the last).
   */
  removeSubtree(root: number, prefix: readonly number[]): { root: number; removed: boolean } {
    try {
      this.checkPrefix(prefix);
      if (this.subtree(root, prefix) === undefined) return { root, removed: false };
      const last = prefix.length - 1;
      const rec = (l: number, r: number): number => {
        if (l === last) return (this.trees[l] as BTree<number>).remove(r, prefix[l]).root;
        return (this.trees[l] as BTree<number>).modify(r, prefix[l], (s) => rec(l + 1, s))!;
      };
      return { root: rec(0, root), removed: true };
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /**
   * Make the upper levels' path to the subtree at `prefix` writable, top-down, without
   * touching the subtree itself, and return the new top root and the subtree's root
   * (undefined when the path is absent; nothing is touched then). This is the first
   * half of changing a lower tree in place: a shared upper node is copied first and
   * passes its references on (incs of the subtree roots it holds), so the lower tree
   * then sees its true sharing. The caller changes the subtree with `leafTree` (or
   * `level(l)`) operations and hands the resulting root back with `relink`. A path
   * already made writable in this transaction costs one lookup per level.
   */
  shadowPath(root: number, prefix: readonly number[]): { root: number; sub: number } | undefined {
    try {
      this.checkPrefix(prefix);
      let sub: number | undefined;
      const newRoot = this.modifyPath(root, prefix, (s) => { sub = s; return s; });
      return newRoot === undefined ? undefined : { root: newRoot, sub: sub! };
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /**
   * Second half of an in-place change below: store `sub` as the subtree root at
   * `prefix`, with no inc or dec. The caller hands over its reference to `sub`, and the
   * old root's reference was already consumed by the lower-level mutation that
   * shadowed it. The path must exist (E_INVARIANT otherwise: the caller lost track).
   */
  relink(root: number, prefix: readonly number[], sub: number): number {
    try {
      this.checkPrefix(prefix);
      const newRoot = this.modifyPath(root, prefix, () => sub);
      if (newRoot === undefined) throw new ThinError('E_INVARIANT', `relink: no subtree at path [${prefix.join(', ')}]`);
      return newRoot;
    } catch (e) {
      throw this.located(e, root, prefix);
    }
  }

  /** Drop one reference to the whole structure. */
  del(root: number): void {
    this.trees[0].del(root);
  }

  private insertAt(l: number, r: number, keys: readonly number[], value: V): number {
    if (l === this.levels - 1) return this.leafTree.insert(r, keys[l], value);
    const t = this.trees[l] as BTree<number>;
    const modified = t.modify(r, keys[l], (sub) => this.insertAt(l + 1, sub, keys, value));
    if (modified !== undefined) return modified;
    // Absent: build the lower path fresh (nothing shared there), then link it in.
    const sub = this.insertAt(l + 1, this.trees[l + 1].empty(), keys, value);
    return t.insert(r, keys[l], sub);
  }

  private insertSubAt(l: number, r: number, prefix: readonly number[], subRoot: number): number {
    const t = this.trees[l] as BTree<number>;
    if (l === prefix.length - 1) return t.insert(r, prefix[l], subRoot);
    const modified = t.modify(r, prefix[l], (sub) => this.insertSubAt(l + 1, sub, prefix, subRoot));
    if (modified !== undefined) return modified;
    return t.insert(r, prefix[l], this.insertSubAt(l + 1, this.trees[l + 1].empty(), prefix, subRoot));
  }

  /** Shadow down to the slot of `prefix` and replace its subtree root with `fn(old)` (no inc/dec). */
  private modifyPath(root: number, prefix: readonly number[], fn: (sub: number) => number): number | undefined {
    if (this.subtree(root, prefix) === undefined) return undefined;
    const last = prefix.length - 1;
    const rec = (l: number, r: number): number =>
      (this.trees[l] as BTree<number>).modify(r, prefix[l], l === last ? fn : (s) => rec(l + 1, s))!;
    return rec(0, root);
  }

  /**
   * `e` with the upper levels' keys and blocks in front of its path, when it came
   * from a level below the top: the level whose root starts its path (error-path.ts).
   */
  located(e: unknown, root: number, keys: readonly number[]): unknown {
    const blocks = e instanceof ThinError ? e.details.pathBlocks as number[] | undefined : undefined;
    if (blocks === undefined) return e;
    const roots = [root];
    for (let l = 0; l < keys.length && l < this.levels - 1 && roots[l] !== blocks[0]; l++) {
      let next: number | undefined;
      try {
        next = (this.trees[l] as BTree<number>).lookup(roots[l], keys[l]);
      } catch {
        next = undefined;
      }
      if (next === undefined) break;
      roots.push(next);
    }
    const from = roots[roots.length - 1] === blocks[0] ? roots.length - 1 : roots.length;
    for (let u = Math.min(from, keys.length) - 1; u >= 0; u--) e = locateBelow(this.trees[u], e, roots[u], keys[u]);
    return e;
  }

  private checkPrefix(prefix: readonly number[]): void {
    if (prefix.length < 1 || prefix.length >= this.levels) throw new ThinError('E_INVALID', `subtree path must have 1..${this.levels - 1} keys, got ${prefix.length}`);
    this.checkPath(prefix, prefix.length);
  }

  private checkPath(keys: readonly number[], n: number): void {
    if (keys.length !== n) throw new ThinError('E_INVALID', `expected ${n} keys (one per level), got ${keys.length}`);
  }
}

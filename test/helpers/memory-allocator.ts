/**
 * A MetadataAllocator for tests: reference counts in an array over a fixed number of
 * blocks, with the last committed counts kept beside them so that a block referenced
 * by the committed state is never handed out (the shadow-paging rule). Block 0 (the
 * superblock) is reserved.
 *
 * Use: after `tm.flushDirty()` (or a commit), call `commitState()`.
 */
import { ThinError } from '../../src/errors';
import type { MetadataAllocator } from '../../src/pdata/transaction-manager';

export class MemoryAllocator implements MetadataAllocator {
  readonly nrBlocks: number;
  private counts: Uint32Array;
  private committed: Uint32Array;
  /** No block below this index is free in both states. */
  private hint = 1;
  allocations = 0;

  constructor(nrBlocks: number) {
    this.nrBlocks = nrBlocks;
    this.counts = new Uint32Array(nrBlocks);
    this.committed = new Uint32Array(nrBlocks);
    this.counts[0] = 1;
    this.committed[0] = 1;
  }

  count(b: number): number {
    this.check(b);
    return this.counts[b];
  }

  inc(b: number): void {
    this.check(b);
    this.counts[b]++;
  }

  dec(b: number): number {
    this.check(b);
    if (this.counts[b] === 0) throw new ThinError('E_CORRUPT', `decrementing block ${b}, whose count is already 0`, { block: b });
    const n = --this.counts[b];
    if (n === 0 && this.committed[b] === 0 && b < this.hint) this.hint = b;
    return n;
  }

  allocate(): number {
    for (let b = this.hint; b < this.nrBlocks; b++) {
      if (this.counts[b] === 0 && this.committed[b] === 0) {
        this.counts[b] = 1;
        this.hint = b + 1;
        this.allocations++;
        return b;
      }
    }
    throw new ThinError('E_NO_METADATA_SPACE', `no free metadata block among ${this.nrBlocks}`);
  }

  /** Set a count directly (seeding from existing metadata); call commitState() after. */
  setCount(b: number, n: number): void {
    this.check(b);
    this.counts[b] = n;
  }

  /** The counts now become the committed state. */
  commitState(): void {
    this.committed = Uint32Array.from(this.counts);
    this.hint = 1;
  }

  /** Blocks with a non-zero count now. */
  allocated(): number {
    let n = 0;
    for (let b = 0; b < this.nrBlocks; b++) if (this.counts[b] !== 0) n++;
    return n;
  }

  snapshot(): Uint32Array {
    return Uint32Array.from(this.counts);
  }

  private check(b: number): void {
    if (!Number.isInteger(b) || b < 0 || b >= this.nrBlocks) {
      throw new ThinError('E_CORRUPT', `block ${b} is outside the metadata device (${this.nrBlocks} blocks)`, { block: b });
    }
  }
}

/**
 * What every part of the check shares: the device read raw (no cache trust), the
 * findings and how they are capped, and the reference tallies the space maps are
 * compared with.
 *
 * Contract: nothing here throws for damaged metadata; a block that cannot be read
 * or validated becomes a finding and `undefined`. Only I/O errors on the device
 * itself propagate.
 */
import { isThinError, ThinError } from '../../errors';
import type { BlockDevice } from '../../io/block-device';
import { BLOCK_SIZE, BlockManager, Validator } from '../../pdata/block-manager';
import type { Tally } from './tally';

export { Tally } from './tally';

export type Severity = 'error' | 'warning';

export interface Finding {
  severity: Severity;
  message: string;
  block?: number;
  /** Where it was found, e.g. "mapping tree > device 3 > block 45". */
  path?: string;
  device?: number;
}

/** Children an internal node can hold (8-byte values): the most one prefetch reads. */
const MAX_CHILDREN = Math.floor((BLOCK_SIZE - 32) / 16);

export class CheckContext {
  readonly bm: BlockManager;
  readonly findings: Finding[] = [];
  /** References to each metadata block found so far (set once the superblock is read). */
  metaRefs!: Tally;
  /** References to each data block found so far (set once the superblock is read). */
  dataRefs!: Tally;
  /** Blocks read ahead by `prefetch`, not yet taken (views into the slots' buffers). */
  private readonly ahead = new Map<number, Uint8Array>();
  private readonly slots: Array<{ buf: Uint8Array; blocks: number[] } | undefined> = [];

  constructor(dev: BlockDevice, private readonly max: number) {
    this.bm = new BlockManager(dev, { cacheBlocks: 1024 });
  }

  /** Count a root pointer; false if it is outside the device. */
  refRoot(b: number, path: string): boolean {
    if (!(b > 0 && b < this.bm.nrBlocks)) {
      this.error(`root ${b} is outside the metadata device (${this.bm.nrBlocks} blocks)`, b, path);
      return false;
    }
    this.metaRefs.inc(b);
    return true;
  }

  /**
   * Read ahead: `blocks` (a node's children about to be visited, at most
   * MAX_CHILDREN) in one device read per run of consecutive block numbers, into the
   * buffer of `slot` (one per tree level and walk nesting, reused: nothing is
   * allocated per block); `readValid` takes them from there. A slot's blocks not
   * taken by its next prefetch (left unvisited) are dropped then. Blocks outside
   * the device are left for `readValid` to report.
   */
  prefetch(blocks: ArrayLike<number>, count: number, slot: number): void {
    const nr = this.bm.nrBlocks;
    const s = this.slots[slot] ?? (this.slots[slot] = { buf: new Uint8Array(MAX_CHILDREN * BLOCK_SIZE), blocks: [] });
    for (const b of s.blocks) if (this.ahead.get(b)?.buffer === s.buf.buffer) this.ahead.delete(b);
    s.blocks.length = 0;
    let at = 0;
    for (let i = 0; i < count && i < MAX_CHILDREN;) {
      const b = blocks[i];
      let j = i + 1;
      if (b > 0 && b < nr && !this.ahead.has(b)) {
        while (j < count && j < MAX_CHILDREN && blocks[j] === blocks[j - 1] + 1 && blocks[j] < nr && !this.ahead.has(blocks[j])) j++;
        const run = s.buf.subarray(at * BLOCK_SIZE, (at + j - i) * BLOCK_SIZE);
        this.bm.device.read(run, b * BLOCK_SIZE);
        for (let k = i; k < j; k++, at++) {
          this.ahead.set(blocks[k], s.buf.subarray(at * BLOCK_SIZE, (at + 1) * BLOCK_SIZE));
          s.blocks.push(blocks[k]);
        }
      }
      i = j;
    }
  }

  /**
   * Block `b` read from the device and validated with `v`, or undefined once reported.
   * `into`: a block-sized buffer to read it into (when not read ahead) instead of a new one.
   */
  readValid(b: number, v: Validator, what: string, path?: string, into?: Uint8Array): Uint8Array | undefined {
    let d: Uint8Array;
    try {
      const pre = this.ahead.get(b);
      if (pre !== undefined) this.ahead.delete(b);
      d = pre ?? (into ? this.readInto(b, into) : this.bm.readRaw(b));
    } catch (e) {
      if (isThinError(e) && e.code === 'E_CORRUPT') { this.error(`${what}: ${e.message}`, b, path); return undefined; }
      throw e;
    }
    try {
      v.check(d, b);
    } catch (e) {
      if (e instanceof ThinError) { this.error(e.message, b, path ?? what); return undefined; }
      throw e;
    }
    return d;
  }

  /** readRaw's checks and read, into `buf`. */
  private readInto(b: number, buf: Uint8Array): Uint8Array {
    if (!Number.isSafeInteger(b) || b < 0 || b >= this.bm.nrBlocks) {
      throw new ThinError('E_CORRUPT', `block ${b} is outside the metadata device (${this.bm.nrBlocks} blocks)`, { block: b });
    }
    this.bm.device.read(buf, b * BLOCK_SIZE);
    return buf;
  }

  error(message: string, block?: number, path?: string, device?: number): void {
    this.add({ severity: 'error', message, block, path, device });
  }

  warn(message: string, block?: number, path?: string): void {
    this.add({ severity: 'warning', message, block, path });
  }

  private add(f: Finding): void {
    if (this.findings.length < this.max) this.findings.push(f);
    else if (f.severity === 'error' && !this.findings.some((x) => x.message.startsWith('too many findings'))) {
      this.findings.push({ severity: 'error', message: `too many findings; stopped listing after ${this.max}` });
    }
  }
}

/**
 * Offline metadata: a read-only view of a pool's metadata for the offline tools
 * (dump, ls, delta), made to stream. It reads the superblock (or the held metadata
 * snapshot), the device details and the top level of the mapping tree when opened,
 * and each device's mappings leaf by leaf (pdata's NodeStream) when asked.
 *
 * Contract:
 * - It implements MetadataView, the part of ThinMetadata the offline tools read,
 *   with the same answers: a ThinMetadata opened on the same device (and the same
 *   `metadataSnap`) gives the same superblock, devices, details and leaves.
 * - Memory does not grow with the number of mappings: no block cache and no space
 *   maps (the tools do not need the reference counts), a few level buffers per walk,
 *   and one entry per device.
 * - Damage throws E_CHECKSUM / E_CORRUPT naming the block (and the tree path for
 *   nodes), as ThinMetadata.open does; nothing is written.
 */
import { ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { BLOCK_SIZE } from '../pdata/block-manager';
import type { LeafView } from '../pdata/btree/btree';
import { NodeStream } from '../pdata/btree/stream';
import { u64Value } from '../pdata/btree/value-type';
import { noDevice } from './device-table';
import { DEVICE_DETAILS_SIZE, DeviceDetails, deviceDetailsValue } from './format/device-details';
import {
  checkOpenable, copySuperblock, isUnformatted, snapshotSuperblockValidator, Superblock, superblockValidator, unpackSuperblock,
} from './format/superblock';

/** What dump, ls and delta read of a pool's metadata (ThinMetadata provides it too). */
export interface MetadataView {
  readonly dataBlockSize: number;
  /** The data device's size in blocks (0 for a metadata-snapshot view, as thin_dump -m prints). */
  readonly nrDataBlocks: number;
  superblock(): Superblock;
  /** Device ids in ascending order. */
  devices(): number[];
  hasDevice(id: number): boolean;
  /** Details of `id`; E_NO_DEVICE if it does not exist. */
  deviceDetails(id: number): DeviceDetails;
  /** `id`'s non-empty mapping leaves in key order (block_time values), through one reused view. */
  mappingLeaves(id: number): Iterable<LeafView>;
}

export interface OfflineOpenOptions {
  /** Read the held metadata snapshot's trees instead of the live ones (or the snapshot at this block). */
  metadataSnap?: boolean | number;
}

export class OfflineMetadata implements MetadataView {
  private readonly stream: NodeStream;
  private readonly sb: Superblock;
  private readonly details = new Map<number, DeviceDetails>();
  private readonly roots = new Map<number, number>();
  private readonly ids: number[];

  private constructor(private readonly dev: BlockDevice, opts: OfflineOpenOptions) {
    this.stream = new NodeStream(dev);
    const live = unpackSuperblock(readBlock(dev, 0, 'live'));
    checkOpenable(live, dev.name, true);
    let sb = live;
    if (opts.metadataSnap) {
      const at = typeof opts.metadataSnap === 'number' ? opts.metadataSnap : live.heldRoot;
      if (!at) throw new ThinError('E_NO_METADATA_SNAP', `metadata on ${dev.name} holds no metadata snapshot (held_root is 0)`, { file: dev.name });
      sb = unpackSuperblock(readBlock(dev, at, 'snapshot'));
    }
    this.sb = sb;
    for (const leaf of this.stream.leaves(sb.deviceDetailsRoot, DEVICE_DETAILS_SIZE)) {
      for (let i = 0; i < leaf.count; i++) this.details.set(leaf.key(i), leaf.value(i, deviceDetailsValue));
    }
    for (const leaf of this.stream.leaves(sb.dataMappingRoot, 8)) {
      for (let i = 0; i < leaf.count; i++) this.roots.set(leaf.key(i), leaf.value(i, u64Value));
    }
    // The details tree names the devices (as ThinMetadata's device table does).
    this.ids = [...this.details.keys()].sort((a, b) => a - b);
  }

  /** Open `dev` read-only. Throws E_CORRUPT for an unformatted (all-zero) or foreign device. */
  static open(dev: BlockDevice, opts: OfflineOpenOptions = {}): OfflineMetadata {
    if (dev.size() < BLOCK_SIZE) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${dev.name} is ${dev.size()} bytes, smaller than one 4 KiB block: is this binary metadata?`, { file: dev.name });
    }
    return new OfflineMetadata(dev, opts);
  }

  get dataBlockSize(): number { return this.sb.dataBlockSize; }
  get nrDataBlocks(): number { return this.sb.dataSmRoot?.nrBlocks ?? 0; }

  superblock(): Superblock {
    return copySuperblock(this.sb);
  }

  devices(): number[] {
    return [...this.ids];
  }

  hasDevice(id: number): boolean {
    return this.details.has(id);
  }

  deviceDetails(id: number): DeviceDetails {
    const d = this.details.get(id);
    if (!d) throw noDevice(id);
    return { ...d };
  }

  mappingLeaves(id: number): Iterable<LeafView> {
    if (!this.details.has(id)) throw noDevice(id);
    const root = this.roots.get(id);
    if (root === undefined) {
      throw new ThinError('E_CORRUPT', `device ${id} has details but no mapping tree: the metadata is damaged; run "thinsim check"`, { device: id, kind: 'mapping tree' });
    }
    return this.stream.leaves(root, 8);
  }

  close(): void {
    this.dev.close();
  }
}

function readBlock(dev: BlockDevice, b: number, which: 'live' | 'snapshot'): Uint8Array {
  const nr = Math.floor(dev.size() / BLOCK_SIZE);
  if (!(b >= 0 && b < nr)) {
    throw new ThinError('E_CORRUPT', `metadata snapshot at block ${b} is outside the metadata device (${nr} blocks)`, { block: b, kind: 'superblock' });
  }
  const d = new Uint8Array(BLOCK_SIZE);
  dev.read(d, b * BLOCK_SIZE);
  if (which === 'live' && isUnformatted(d)) {
    throw new ThinError('E_CORRUPT', `metadata device ${dev.name} is unformatted (block 0 is all zeros)`, { block: 0, kind: 'superblock', file: dev.name });
  }
  (which === 'live' ? superblockValidator : snapshotSuperblockValidator).check(d, b);
  return d;
}

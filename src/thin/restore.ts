/**
 * Restore: build pool metadata from a metadata stream (thin_dump XML through
 * xml/reader.ts, or any MetadataSink producer), as thin_restore does.
 *
 * Contract: subtrees are built in bulk (restorer.ts), one device at a time, and
 * written in bounded rounds as thin_restore does, so memory grows with the pool only
 * by the space maps' counts (2 bits per block, about 4 more per shared data block);
 * beyond them, 1 MiB of metadata blocks and one leaf per tree level. The superblock is written last: a stream that fails part way (bad XML, a
 * mapping past the data device) leaves an existing device that holds metadata
 * exactly as it was (restoreFile undoes the rounds already written:
 * restore-undo.ts); a file it created is removed; on a device whose block 0 is
 * zero (no pool) the blocks written before the failure stay, unreferenced. Each device's
 * mapped_blocks is recomputed from its mappings (as thin_restore 0.9.0 does), so
 * the result always passes a check. Data reference counts are the number of
 * devices mapping each block (no sharing of metadata nodes between devices).
 */
import * as fs from 'fs';
import { ioError, ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { FileDevice } from '../io/file-device';
import { readXml } from './xml/reader';
import { checkDataBlockSize } from '../units';
import { ThinMetadata } from './metadata';
import { MetadataRestorer, startRestore } from './restorer';
import { UndoDevice } from './restore-undo';
import type { DeviceInfo, MetadataSink, SuperblockInfo } from './xml/types';

export class RestoreSink implements MetadataSink {
  md: ThinMetadata | undefined;
  private restorer: MetadataRestorer | undefined;
  private devId: number | undefined;
  devices = 0;
  mappings = 0;

  /** `roundBlocks`: metadata blocks held before a round is written (restorer.ts's ROUND_BLOCKS by default). */
  constructor(private readonly target: BlockDevice, private readonly roundBlocks?: number) {}

  superblock(sb: SuperblockInfo): void {
    try {
      checkDataBlockSize(sb.dataBlockSize);
    } catch (e) {
      throw new ThinError('E_PARSE', `superblock data_block_size="${sb.dataBlockSize}": ${(e as Error).message}`, { value: sb.dataBlockSize });
    }
    this.restorer = startRestore(this.target, { dataBlockSize: sb.dataBlockSize, nrDataBlocks: sb.nrDataBlocks, time: sb.time, transactionId: sb.transaction }, { roundBlocks: this.roundBlocks });
  }

  device(d: DeviceInfo): void {
    const r = this.requireRestorer();
    if (r.hasDevice(d.devId)) throw new ThinError('E_PARSE', `device ${d.devId} appears twice`, { device: d.devId });
    r.beginDevice(d.devId, { transactionId: d.transaction, creationTime: d.creationTime, snapshottedTime: d.snapTime });
    this.devId = d.devId;
  }

  mapping(originBegin: number, dataBegin: number, length: number, time: number): void {
    const r = this.requireRestorer();
    if (this.devId === undefined) throw new ThinError('E_PARSE', 'mapping outside a device');
    if (dataBegin + length > r.nrDataBlocks) {
      throw new ThinError('E_PARSE', `mapping to data blocks ${dataBegin}..${dataBegin + length - 1} is beyond the data device (${r.nrDataBlocks} blocks)`, { device: this.devId });
    }
    r.mapRun(originBegin, dataBegin, length, time);
    this.mappings += length;
  }

  endDevice(): void {
    this.requireRestorer().endDevice();
    this.devices++;
    this.devId = undefined;
  }

  endSuperblock(): void {
    this.md = this.requireRestorer().finish();
  }

  private requireRestorer(): MetadataRestorer {
    if (!this.restorer) throw new ThinError('E_PARSE', 'element before <superblock>');
    return this.restorer;
  }
}

export interface RestoreFileOptions {
  /** Size of a metadata file that does not exist yet (bytes). */
  metadataSize: number;
  /** Metadata blocks held before a round is written (default: restorer.ts's ROUND_BLOCKS). */
  roundBlocks?: number;
}

export interface RestoreResult {
  path: string;
  created: boolean;
  devices: number;
  mappings: number;
  metadataBlocks: number;
  metadataUsed: number;
}

/**
 * Restore XML (a path, or a readable stream) into the metadata file `path`. An
 * existing file keeps its size, as thin_restore does; a missing one is created
 * (sparse) with `metadataSize`, and removed again if the restore fails.
 */
export async function restoreFile(path: string, input: string | import('stream').Readable, opts: RestoreFileOptions): Promise<RestoreResult> {
  const created = !fs.existsSync(path);
  if (created) {
    try {
      fs.writeFileSync(path, '', { mode: 0o600 }); // metadata is its owner's only, as a pool's is
      fs.truncateSync(path, opts.metadataSize);
    } catch (e) {
      throw ioError('create metadata file', path, e);
    }
  }
  const file = new FileDevice(path);
  // An existing device holding metadata keeps what a failed restore overwrote, to put
  // it back. One whose block 0 is zero (a fresh file, a wiped device) holds no pool.
  let undo: UndoDevice | undefined;
  try {
    undo = created || !ThinMetadata.hasSuperblock(file) ? undefined : new UndoDevice(file);
  } catch (e) {
    file.close();
    throw e;
  }
  const dev = undo ?? file;
  const sink = new RestoreSink(dev, opts.roundBlocks);
  try {
    await readXml(input as string | import('stream').Readable, sink, { fileName: typeof input === 'string' ? input : undefined });
    if (!sink.md) throw new ThinError('E_PARSE', 'the XML has no <superblock> element');
  } catch (e) {
    try {
      undo?.rollback();
    } finally {
      dev.close();
      if (created) fs.rmSync(path, { force: true });
    }
    throw e;
  }
  undo?.discard();
  const md = sink.md;
  const result: RestoreResult = {
    path, created, devices: sink.devices, mappings: sink.mappings,
    metadataBlocks: md.spaceUsage().metadataBlocks, metadataUsed: md.spaceUsage().metadataUsed,
  };
  md.close();
  return result;
}

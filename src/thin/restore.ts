/**
 * Restore: build pool metadata from a metadata stream (thin_dump XML through
 * xml/reader.ts, or any MetadataSink producer), as thin_restore does.
 *
 * Contract: subtrees are built in bulk (BTreeBuilder), one device at a time, so
 * memory is bounded by the metadata being written, not by the XML. Nothing reaches
 * the device before the final commit: a stream that fails part way (bad XML, a
 * mapping past the data device) leaves the device exactly as it was. Each device's
 * mapped_blocks is recomputed from its mappings (as thin_restore 0.9.0 does), so
 * the result always passes a check. Data reference counts are the number of
 * devices mapping each block (no sharing of metadata nodes between devices).
 */
import * as fs from 'fs';
import { ioError, ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { FileDevice } from '../io/file-device';
import { readXml } from './xml/reader';
import { BTreeBuilder } from '../pdata/btree/builder';
import { checkDataBlockSize } from '../units';
import { BlockTime } from './format/block-time';
import { ThinMetadata } from './metadata';
import type { DeviceInfo, MetadataSink, SuperblockInfo } from './xml/types';

export class RestoreSink implements MetadataSink {
  md: ThinMetadata | undefined;
  private builder: BTreeBuilder<BlockTime> | undefined;
  private device_: DeviceInfo | undefined;
  devices = 0;
  mappings = 0;

  constructor(private readonly target: BlockDevice) {}

  superblock(sb: SuperblockInfo): void {
    try {
      checkDataBlockSize(sb.dataBlockSize);
    } catch (e) {
      throw new ThinError('E_PARSE', `superblock data_block_size="${sb.dataBlockSize}": ${(e as Error).message}`, { value: sb.dataBlockSize });
    }
    const md = ThinMetadata.format(this.target, { dataBlockSize: sb.dataBlockSize, nrDataBlocks: sb.nrDataBlocks, deferCommit: true });
    md.setTime(sb.time);
    md.sb.transactionId = sb.transaction;
    this.md = md;
  }

  device(d: DeviceInfo): void {
    const md = this.requireMd();
    if (md.hasDevice(d.devId)) throw new ThinError('E_PARSE', `device ${d.devId} appears twice`, { device: d.devId });
    this.device_ = d;
    this.builder = new BTreeBuilder(md.tm, md.mappingValue);
  }

  mapping(originBegin: number, dataBegin: number, length: number, time: number): void {
    const md = this.requireMd();
    const b = this.builder;
    if (!b) throw new ThinError('E_PARSE', 'mapping outside a device');
    if (dataBegin + length > md.nrDataBlocks) {
      throw new ThinError('E_PARSE', `mapping to data blocks ${dataBegin}..${dataBegin + length - 1} is beyond the data device (${md.nrDataBlocks} blocks)`, { device: this.device_?.devId });
    }
    const sm = md.dataSm!;
    for (let i = 0; i < length; i++) {
      b.push(originBegin + i, { block: dataBegin + i, time });
      sm.inc(dataBegin + i);
    }
    this.mappings += length;
  }

  endDevice(): void {
    const md = this.requireMd();
    const d = this.device_!;
    const b = this.builder!;
    md.adoptDevice(d.devId, b.finish(), { mappedBlocks: b.size, transactionId: d.transaction, creationTime: d.creationTime, snapshottedTime: d.snapTime });
    this.devices++;
    this.builder = undefined;
    this.device_ = undefined;
  }

  endSuperblock(): void {
    this.requireMd().commit();
  }

  private requireMd(): ThinMetadata {
    if (!this.md) throw new ThinError('E_PARSE', 'element before <superblock>');
    return this.md;
  }
}

export interface RestoreFileOptions {
  /** Size of a metadata file that does not exist yet (bytes). */
  metadataSize: number;
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
      fs.writeFileSync(path, '');
      fs.truncateSync(path, opts.metadataSize);
    } catch (e) {
      throw ioError('create metadata file', path, e);
    }
  }
  const dev = new FileDevice(path);
  const sink = new RestoreSink(dev);
  try {
    await readXml(input as string | import('stream').Readable, sink, { fileName: typeof input === 'string' ? input : undefined });
    if (!sink.md) throw new ThinError('E_PARSE', 'the XML has no <superblock> element');
  } catch (e) {
    dev.close();
    if (created) fs.rmSync(path, { force: true });
    throw e;
  }
  const md = sink.md;
  const result: RestoreResult = {
    path, created, devices: sink.devices, mappings: sink.mappings,
    metadataBlocks: md.metadataSm!.nrBlocks, metadataUsed: md.metadataSm!.nrAllocated,
  };
  md.close();
  return result;
}

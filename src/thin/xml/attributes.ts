/**
 * The XML reader's attribute values: one element's attributes (as saxes hands them
 * over) into checked numbers, and the `<superblock>` and `<device>` records.
 *
 * Contract: a number is decimal digits only, at most 2^53 - 1 (not representable
 * above) and at most the field's own bound (u32 for times, flags, version and
 * data_block_size; 2^24 - 1 for dev_id); data_block_size is above 0; flags and
 * version default to 0 and 2 when absent; attributes thin_restore does not know are
 * ignored. Each problem is an E_PARSE error at the current tag that names the element
 * and the attribute and says what to write instead (reader-errors.ts).
 */
import { MAX_DEV_ID, MAX_SAFE, MAX_U32, type DeviceInfo, type SuperblockInfo } from './types';
import type { XmlErrors } from './reader-errors';

export type Attributes = Record<string, string>;

export function requireAttr(err: XmlErrors, el: string, a: Attributes, attr: string): string {
  const v = a[attr];
  if (v === undefined) {
    throw err.tag(el, `<${el}> is missing required attribute ${attr}; add ${attr}="..." (see thin_dump's output for the format)`, attr);
  }
  return v;
}

/** Attribute `attr` of `<el>` as a whole number at most `max` (`what` names the kind in the error). */
export function num(err: XmlErrors, el: string, a: Attributes, attr: string, max: number, what?: string): number {
  const s = requireAttr(err, el, a, attr);
  if (!/^[0-9]+$/.test(s)) {
    throw err.tag(el, `<${el}> attribute ${attr}="${s}" is not a whole number; write it as decimal digits only`, attr);
  }
  const n = Number(s);
  if (n > MAX_SAFE) {
    throw err.tag(el, `<${el}> attribute ${attr}="${s}" exceeds 2^53-1, the largest number thinsim handles exactly`, attr);
  }
  if (n > max) {
    throw err.tag(el, `<${el}> attribute ${attr}="${s}" is out of range: it must be ${what ?? 'a number'} at most ${max}`, attr);
  }
  return n;
}

export function parseSuperblock(err: XmlErrors, a: Attributes): SuperblockInfo {
  const el = 'superblock';
  const uuid = requireAttr(err, el, a, 'uuid');
  const sb: SuperblockInfo = {
    uuid,
    time: num(err, el, a, 'time', MAX_U32, 'a u32'),
    transaction: num(err, el, a, 'transaction', MAX_SAFE),
    flags: a.flags === undefined ? 0 : num(err, el, a, 'flags', MAX_U32, 'a u32'),
    version: a.version === undefined ? 2 : num(err, el, a, 'version', MAX_U32, 'a u32'),
    dataBlockSize: num(err, el, a, 'data_block_size', MAX_U32, 'a u32 count of 512-byte sectors'),
    nrDataBlocks: num(err, el, a, 'nr_data_blocks', MAX_SAFE),
  };
  if (sb.dataBlockSize === 0) {
    throw err.tag(el, '<superblock> attribute data_block_size="0": the data block size must be a positive number of 512-byte sectors (e.g. 128 for 64 KiB)', 'data_block_size');
  }
  if (a.metadata_snap !== undefined) sb.metadataSnap = num(err, el, a, 'metadata_snap', MAX_SAFE);
  return sb;
}

export function parseDevice(err: XmlErrors, a: Attributes): DeviceInfo {
  const el = 'device';
  return {
    devId: num(err, el, a, 'dev_id', MAX_DEV_ID, 'a 24-bit thin device id'),
    mappedBlocks: num(err, el, a, 'mapped_blocks', MAX_SAFE),
    transaction: num(err, el, a, 'transaction', MAX_SAFE),
    creationTime: num(err, el, a, 'creation_time', MAX_U32, 'a u32 time'),
    snapTime: num(err, el, a, 'snap_time', MAX_U32, 'a u32 time'),
  };
}

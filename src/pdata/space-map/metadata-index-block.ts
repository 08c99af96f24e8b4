/**
 * Metadata space-map index block (spec §6.6): header (csum, padding, blocknr) then
 * 255 index entries; the metadata device therefore has at most 255 bitmaps.
 */
import { saltedValidator } from '../block-manager';
import { INDEX_ENTRY_SIZE, IndexEntry, readIndexEntry, writeIndexEntry } from './index-entry';

export const INDEX_BLOCK_SALT = 160478;
export const MAX_METADATA_BITMAPS = 255;

export const indexBlockValidator = saltedValidator('metadata index block', INDEX_BLOCK_SALT);

export function readIndexBlock(data: Uint8Array, count: number): IndexEntry[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.length);
  const out: IndexEntry[] = [];
  for (let j = 0; j < count; j++) out.push(readIndexEntry(dv, 16 + j * INDEX_ENTRY_SIZE));
  return out;
}

export function writeIndexBlock(data: Uint8Array, entries: IndexEntry[]): void {
  data.fill(0, 16);
  const dv = new DataView(data.buffer, data.byteOffset, data.length);
  entries.forEach((e, j) => writeIndexEntry(dv, 16 + j * INDEX_ENTRY_SIZE, e));
}

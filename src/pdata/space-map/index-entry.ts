/**
 * Index entry (spec §6.4): where bitmap j lives and two allocation hints.
 * 16 bytes: blocknr u64, nr_free u32, none_free_before u32.
 * We write the kernel convention (nr_free counts phantom entries past nr_blocks as
 * free); readers never trust the hints.
 */
import { readU64, writeU64 } from '../layout';

export const INDEX_ENTRY_SIZE = 16;

export interface IndexEntry {
  blocknr: number;
  nrFree: number;
  noneFreeBefore: number;
}

export function readIndexEntry(dv: DataView, off: number): IndexEntry {
  return {
    blocknr: readU64(dv, off, 'index entry blocknr'),
    nrFree: dv.getUint32(off + 8, true),
    noneFreeBefore: dv.getUint32(off + 12, true),
  };
}

export function writeIndexEntry(dv: DataView, off: number, e: IndexEntry): void {
  writeU64(dv, off, e.blocknr, 'index entry blocknr');
  dv.setUint32(off + 8, e.nrFree, true);
  dv.setUint32(off + 12, e.noneFreeBefore, true);
}

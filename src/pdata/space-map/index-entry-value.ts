import type { ValueType } from '../btree/value-type';
import { IndexEntry, INDEX_ENTRY_SIZE, readIndexEntry, writeIndexEntry } from './index-entry';

/** Index entries as btree values (the data space map's index tree). No references to count. */
export const indexEntryValue: ValueType<IndexEntry> = {
  size: INDEX_ENTRY_SIZE,
  read: readIndexEntry,
  write: writeIndexEntry,
  equal: (a, b) => a.blocknr === b.blocknr && a.nrFree === b.nrFree && a.noneFreeBefore === b.noneFreeBefore,
};

/**
 * The XML reader's fast path (see reader.ts): recognise, in raw bytes, one line that is
 * exactly one canonical mapping element as thin_dump prints it, and decode its numbers.
 *
 * Contract: pure; `scanMappingLine` fills `out` and returns true only for a line (bytes
 * [p, e), e at its newline) of optional blanks, then `<single_mapping origin_block="N"
 * data_block="N" time="N"/>` or `<range_mapping origin_begin="N" data_begin="N" length="N"
 * time="N"/>` (attributes in that order, double quotes), then optional blanks or a CR;
 * each N 1 to 15 decimal digits, a range's length above 0, the time a u32. Anything else
 * (including numbers it leaves to saxes' path to report) is false, with `out` unspecified.
 */
import { MAX_U32 } from './types';

export interface MappingLine {
  name: 'single_mapping' | 'range_mapping';
  origin: number;
  data: number;
  length: number;
  time: number;
  /** 1-based column of the `<`. */
  column: number;
}

const SINGLE_HEAD = Buffer.from('<single_mapping origin_block="');
const SINGLE_DATA = Buffer.from('" data_block="');
const RANGE_HEAD = Buffer.from('<range_mapping origin_begin="');
const RANGE_DATA = Buffer.from('" data_begin="');
const RANGE_LENGTH = Buffer.from('" length="');
const TIME_ATTR = Buffer.from('" time="');
const TAG_END = Buffer.from('"/>');

export function scanMappingLine(b: Buffer, p: number, e: number, out: MappingLine): boolean {
  let i = p;
  while (i < e && (b[i] === 32 || b[i] === 9)) i++;
  out.column = i - p + 1;
  if (at(b, SINGLE_HEAD, i)) {
    i += SINGLE_HEAD.length;
    if ((out.origin = digits(b, i, e)) < 0) return false;
    i = skipDigits(b, i);
    if (!at(b, SINGLE_DATA, i)) return false;
    i += SINGLE_DATA.length;
    if ((out.data = digits(b, i, e)) < 0) return false;
    i = skipDigits(b, i);
    out.length = 1;
    out.name = 'single_mapping';
  } else if (at(b, RANGE_HEAD, i)) {
    i += RANGE_HEAD.length;
    if ((out.origin = digits(b, i, e)) < 0) return false;
    i = skipDigits(b, i);
    if (!at(b, RANGE_DATA, i)) return false;
    i += RANGE_DATA.length;
    if ((out.data = digits(b, i, e)) < 0) return false;
    i = skipDigits(b, i);
    if (!at(b, RANGE_LENGTH, i)) return false;
    i += RANGE_LENGTH.length;
    if ((out.length = digits(b, i, e)) <= 0) return false;
    i = skipDigits(b, i);
    out.name = 'range_mapping';
  } else {
    return false;
  }
  if (!at(b, TIME_ATTR, i)) return false;
  i += TIME_ATTR.length;
  if ((out.time = digits(b, i, e)) < 0 || out.time > MAX_U32) return false;
  i = skipDigits(b, i);
  if (!at(b, TAG_END, i)) return false;
  i += TAG_END.length;
  while (i < e && (b[i] === 32 || b[i] === 9 || b[i] === 13)) i++;
  return i === e;
}

/** The decimal number at b[i..] (1 to 15 digits, below `end`), or -1 (saxes' path reports it). */
function digits(b: Buffer, i: number, end: number): number {
  let n = 0;
  let k = i;
  for (; k < end && k - i < 16; k++) {
    const c = b[k];
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  return k === i || k - i > 15 ? -1 : n;
}

/** Do the bytes at b[i..] spell `lit`? */
function at(b: Buffer, lit: Buffer, i: number): boolean {
  if (i + lit.length > b.length) return false;
  for (let k = 0; k < lit.length; k++) if (b[i + k] !== lit[k]) return false;
  return true;
}

function skipDigits(b: Buffer, i: number): number {
  while (b[i] >= 48 && b[i] <= 57) i++;
  return i;
}

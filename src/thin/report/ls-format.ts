/**
 * thin_ls output: one row per thin device, columns chosen with -o, printed exactly as
 * thin-provisioning-tools 0.9.0 prints them (1.1 differs only in unit suffixes, see
 * formatDiskUnit; select it with dialect '1.x'). Checked against both tools in test/thin-xml.
 *
 * Contract: pure formatting; the engine supplies per-device numbers. Memory is one row per device.
 *
 * Layout: every column is right-justified to the width of its longest cell (header included)
 * and followed by one space, so each line ends with a space before "\n". The header row holds
 * the field names; --no-headers drops it. No devices and no header: empty output.
 * Default columns (no -o): DEV MAPPED CREATE_TIME SNAP_TIME.
 *
 * Fields (thin_ls --help, same list in 0.9.0 and 1.1):
 *   DEV                                       device id
 *   MAPPED_BLOCKS / _SECTORS / _BYTES          mapped blocks, x data_block_size, x 512
 *   EXCLUSIVE_BLOCKS / _SECTORS / _BYTES       exclusive blocks (rule below)
 *   SHARED_BLOCKS / _SECTORS / _BYTES          mapped - exclusive
 *   MAPPED, EXCLUSIVE, SHARED                  the byte counts in binary units (formatDiskUnit)
 *   TRANSACTION, CREATE_TIME, SNAP_TIME        device details: transaction id, creation time,
 *                                              snapshotted time
 *
 * EXCLUSIVE vs SHARED (determined by experiment with 0.9.0 and 1.1, matching the source):
 * count, over every mapping of every device in the pool, how many mappings point at each data
 * block. A mapping is EXCLUSIVE when its data block is pointed at by exactly one mapping in the
 * whole pool, and SHARED otherwise. So a block mapped by two devices is shared for both, and a
 * block mapped twice inside one device (two virtual blocks, same data block) is shared too: both
 * of those mappings count as shared. Data space-map reference counts are not used by 0.9.0 (a
 * kernel pool's counts agree with this rule because they count distinct leaves the same way).
 * SHARED_BLOCKS = MAPPED_BLOCKS - EXCLUSIVE_BLOCKS, where 0.9.0 takes MAPPED_BLOCKS from the
 * device details record and 1.1 counts the mappings (equal on consistent metadata).
 * SharingCounter below implements the rule in two passes.
 */

import { ThinError } from '../../errors';

export const LS_FIELDS = [
  'DEV',
  'MAPPED_BLOCKS',
  'EXCLUSIVE_BLOCKS',
  'SHARED_BLOCKS',
  'MAPPED_SECTORS',
  'EXCLUSIVE_SECTORS',
  'SHARED_SECTORS',
  'MAPPED_BYTES',
  'EXCLUSIVE_BYTES',
  'SHARED_BYTES',
  'MAPPED',
  'EXCLUSIVE',
  'SHARED',
  'TRANSACTION',
  'CREATE_TIME',
  'SNAP_TIME',
] as const;

export type LsField = (typeof LS_FIELDS)[number];

export const DEFAULT_LS_FIELDS: readonly LsField[] = ['DEV', 'MAPPED', 'CREATE_TIME', 'SNAP_TIME'];

/** Which tool's unit formatting to copy. */
export type LsDialect = '0.9' | '1.x';

export interface LsDevice {
  devId: number;
  /** Mapped blocks (0.9.0 uses the details record's mapped_blocks). */
  mappedBlocks: number;
  /** Mappings whose data block no other mapping in the pool uses (see the rule above). */
  exclusiveBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
}

/** A row without sharing counts: enough for columns that need none (see needsSharing). */
export type LsRow = Omit<LsDevice, 'exclusiveBlocks'> & { exclusiveBlocks?: number };

/** Do any of `fields` need the EXCLUSIVE/SHARED counts (a pass over every mapping)? */
export function needsSharing(fields: readonly LsField[]): boolean {
  return fields.some((f) => f.startsWith('EXCLUSIVE') || f.startsWith('SHARED'));
}

export interface LsOptions {
  /** Columns in order; default DEFAULT_LS_FIELDS. */
  fields?: readonly LsField[];
  /** Print the header row (default true; thin_ls --no-headers = false). */
  headers?: boolean;
  /** Superblock data_block_size in 512-byte sectors. */
  dataBlockSize: number;
  dialect?: LsDialect;
}

/** Parse a thin_ls -o argument ("DEV,MAPPED,..."); unknown names are E_INVALID. */
export function parseLsFields(spec: string): LsField[] {
  return spec.split(',').map((name) => {
    if (!(LS_FIELDS as readonly string[]).includes(name)) {
      throw new ThinError('E_INVALID', `unknown thin_ls field "${name}"; choose from ${LS_FIELDS.join(', ')}`, { field: name });
    }
    return name as LsField;
  });
}

const UNITS_09 = ['', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
/** 1.1's suffixes, including its "Tib" spelling. */
const UNITS_1X = ['b', 'KiB', 'MiB', 'GiB', 'Tib', 'PiB', 'EiB'];
const KIB = 1024n;
const MIB = 1024n * 1024n;

/**
 * The tools' `format_disk_unit` for byte counts (MAPPED, EXCLUSIVE, SHARED columns):
 * while bytes > 1 MiB, divide by 1024 (truncating) and step up one unit; then, if the value is
 * still > 8192, divide by 1024 rounding to nearest (halves away from zero) and step up once
 * more. So 1536 bytes -> "1536", 1 MiB -> "1024KiB", 1.5 MiB -> "1536KiB", 128 MiB - 64 KiB ->
 * "128MiB". 0.9.0 prints no suffix for bytes ("0", "512"); 1.1 prints "b" ("0b", "512b") and
 * spells tebibytes "Tib".
 */
export function formatDiskUnit(bytes: bigint | number, dialect: LsDialect = '0.9'): string {
  let n = BigInt(bytes);
  let i = 0;
  while (n > MIB) {
    n /= KIB;
    i++;
  }
  if (n > 8n * KIB) {
    n = (n + KIB / 2n) / KIB;
    i++;
  }
  return `${n}${(dialect === '1.x' ? UNITS_1X : UNITS_09)[i]}`;
}

function cell(f: LsField, d: LsRow, bs: bigint, dialect: LsDialect): string {
  const mapped = BigInt(d.mappedBlocks);
  if (d.exclusiveBlocks === undefined && needsSharing([f])) {
    throw new ThinError('E_INVALID', `thin_ls column ${f} needs sharing counts, which were not computed`);
  }
  const excl = BigInt(d.exclusiveBlocks ?? 0);
  const shared = mapped - excl;
  switch (f) {
    case 'DEV': return String(d.devId);
    case 'MAPPED_BLOCKS': return String(mapped);
    case 'EXCLUSIVE_BLOCKS': return String(excl);
    case 'SHARED_BLOCKS': return String(shared);
    case 'MAPPED_SECTORS': return String(mapped * bs);
    case 'EXCLUSIVE_SECTORS': return String(excl * bs);
    case 'SHARED_SECTORS': return String(shared * bs);
    case 'MAPPED_BYTES': return String(mapped * bs * 512n);
    case 'EXCLUSIVE_BYTES': return String(excl * bs * 512n);
    case 'SHARED_BYTES': return String(shared * bs * 512n);
    case 'MAPPED': return formatDiskUnit(mapped * bs * 512n, dialect);
    case 'EXCLUSIVE': return formatDiskUnit(excl * bs * 512n, dialect);
    case 'SHARED': return formatDiskUnit(shared * bs * 512n, dialect);
    case 'TRANSACTION': return String(d.transaction);
    case 'CREATE_TIME': return String(d.creationTime);
    case 'SNAP_TIME': return String(d.snapTime);
  }
}

/** Render thin_ls's table for `devices` (in the order given; the tool lists ascending dev ids). */
export function formatLs(devices: Iterable<LsRow>, opts: LsOptions): string {
  const fields = opts.fields ?? DEFAULT_LS_FIELDS;
  const dialect = opts.dialect ?? '0.9';
  const bs = BigInt(opts.dataBlockSize);
  const rows: string[][] = [];
  if (opts.headers ?? true) rows.push([...fields]);
  for (const d of devices) rows.push(fields.map((f) => cell(f, d, bs, dialect)));
  const widths = fields.map((_, i) => rows.reduce((w, r) => Math.max(w, r[i].length), 0));
  let text = '';
  for (const r of rows) {
    text += r.map((c, i) => c.padStart(widths[i]) + ' ').join('') + '\n';
  }
  return text;
}

/**
 * Two-pass exclusive/shared counter over data blocks, 2 bits per block (0 = unused,
 * 1 = one mapping, 2 = more). Pass 1: inc() for every mapping of every device. Pass 2: per
 * device, count mappings for which isExclusive(dataBlock) holds.
 */
export class SharingCounter {
  private readonly bits: Uint8Array;
  constructor(readonly nrDataBlocks: number) {
    this.bits = new Uint8Array(Math.ceil(nrDataBlocks / 4));
  }

  /** Record one mapping to `block` (pass 1). */
  inc(block: number, length = 1): void {
    for (let b = block; b < block + length; b++) {
      const i = Math.floor(b / 4);
      const s = (b % 4) * 2;
      const v = (this.bits[i] >> s) & 3;
      if (v < 2) this.bits[i] = (this.bits[i] & ~(3 << s)) | ((v + 1) << s);
    }
  }

  /** True when exactly one mapping in the pool uses `block`. */
  isExclusive(block: number): boolean {
    return ((this.bits[Math.floor(block / 4)] >> ((block % 4) * 2)) & 3) === 1;
  }

  /** Count exclusive blocks among `length` consecutive data blocks from `block` (pass 2). */
  exclusiveIn(block: number, length = 1): number {
    let n = 0;
    for (let b = block; b < block + length; b++) if (this.isExclusive(b)) n++;
    return n;
  }
}

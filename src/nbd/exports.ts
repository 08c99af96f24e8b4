/**
 * The export table: which thin devices a server offers, under which names.
 *
 * Contract:
 * - Either a fixed list of (name, device id) pairs, or "every thin device under its id"
 *   (decimal), read from the pool on each lookup so devices created while serving appear.
 * - The empty name (the protocol's "default export") is the first export listed.
 * - A device deleted while serving simply stops resolving; sizes are read per lookup.
 * - Names follow the protocol's string rules: UTF-8, no NUL, at most 4096 bytes.
 */
import { ThinError } from '../errors';
import type { Pool } from '../pool/pool';
import { MAX_STRING } from './protocol';

export interface ExportSpec {
  name: string;
  id: number;
}

export interface Export {
  name: string;
  id: number;
  /** Bytes. */
  size: number;
  readOnly: boolean;
  description: string;
}

export class ExportTable {
  private readonly fixed: ExportSpec[] | undefined;

  constructor(private readonly pool: Pool, specs: readonly ExportSpec[] | undefined, private readonly readOnly: boolean) {
    if (specs === undefined || specs.length === 0) {
      this.fixed = undefined;
      return;
    }
    const seen = new Set<string>();
    for (const s of specs) {
      checkName(s.name);
      if (seen.has(s.name)) throw new ThinError('E_INVALID', `export name "${s.name}" is given twice`);
      seen.add(s.name);
      if (!Number.isSafeInteger(s.id) || s.id < 0) throw new ThinError('E_INVALID', `export "${s.name}": device id must be a whole number, got ${s.id}`);
      pool.deviceSize(s.id); // E_NO_DEVICE now, not at the first client
    }
    this.fixed = specs.map((s) => ({ ...s }));
  }

  /** Every export whose device exists, in table order (or by device id). */
  list(): Export[] {
    const specs = this.fixed ?? this.pool.devices().sort((a, b) => a - b).map((id) => ({ name: String(id), id }));
    const out: Export[] = [];
    for (const s of specs) {
      const e = this.resolve(s);
      if (e) out.push(e);
    }
    return out;
  }

  lookup(name: string): Export | undefined {
    if (name === '') return this.list()[0];
    if (this.fixed) {
      const s = this.fixed.find((f) => f.name === name);
      return s && this.resolve(s);
    }
    if (!/^(0|[1-9][0-9]{0,15})$/.test(name)) return undefined;
    return this.resolve({ name, id: Number(name) });
  }

  private resolve(s: ExportSpec): Export | undefined {
    if (!this.pool.hasDevice(s.id)) return undefined;
    const size = this.pool.deviceSize(s.id);
    return {
      name: s.name, id: s.id, size, readOnly: this.readOnly || this.pool.readOnly,
      description: `thin device ${s.id} of pool ${this.pool.dir}`,
    };
  }
}

function checkName(name: string): void {
  if (name.includes('\0')) throw new ThinError('E_INVALID', 'an export name must not contain NUL');
  if (Buffer.byteLength(name, 'utf8') > MAX_STRING) throw new ThinError('E_INVALID', `export name is longer than ${MAX_STRING} bytes`);
}

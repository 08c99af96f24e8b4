/**
 * The export table: which thin devices a server offers, under which names.
 *
 * Contract:
 * - Either a fixed list of (name, device id) pairs, or "every thin device under its id"
 *   (decimal), read from the pool on each lookup so devices created while serving appear.
 * - The empty name (the protocol's "default export") is the first export listed.
 * - A device deleted while serving simply stops resolving; sizes are read per lookup.
 * - Names follow the protocol's string rules: UTF-8, no NUL, at most 4096 bytes.
 * - A fixed export may point at no device (id UNBOUND, with a size), and retarget(name,
 *   id) points it at another device of its size, or at none. Connections already
 *   transmitting on it follow at their next request (their Export's id is live); while
 *   it points at none it keeps its size and every request on it fails with EIO. The
 *   mounts layer uses this to keep loop devices ready for the next device (spares).
 */
import { ThinError } from '../errors';
import type { Pool } from '../pool/pool';
import { MAX_STRING } from './protocol';

export interface ExportSpec {
  name: string;
  /** The thin device, or UNBOUND (then `size` is required): see retarget(). */
  id: number;
  /** Bytes; only for an UNBOUND export (a bound one has its device's size). */
  size?: number;
}

export interface Export {
  name: string;
  id: number;
  /** Bytes. */
  size: number;
  readOnly: boolean;
  description: string;
}

/** The id of a fixed export that points at no device (retarget(name, undefined)). */
export const UNBOUND = -1;

export class ExportTable {
  private readonly fixed: ExportSpec[] | undefined;
  /** Each fixed export's size in bytes, as at start: a retarget keeps it. */
  private readonly sizes = new Map<string, number>();

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
      if (s.id === UNBOUND) {
        if (!Number.isSafeInteger(s.size) || s.size! <= 0) throw new ThinError('E_INVALID', `export "${s.name}" points at no device, so it needs a size in bytes, got ${s.size}`);
        this.sizes.set(s.name, s.size!);
        continue;
      }
      if (!Number.isSafeInteger(s.id) || s.id < 0) throw new ThinError('E_INVALID', `export "${s.name}": device id must be a whole number, got ${s.id}`);
      this.sizes.set(s.name, pool.deviceSize(s.id)); // E_NO_DEVICE now, not at the first client
    }
    this.fixed = specs.map((s) => ({ ...s, id: small(s.id) }));
  }

  /** Point fixed export `name` at device `id` (of the export's size), or at none (undefined). */
  retarget(name: string, id: number | undefined): void {
    const s = this.fixed?.find((f) => f.name === name);
    if (!s) throw new ThinError('E_INVALID', `cannot retarget export "${name}": ${this.fixed ? 'no such export' : 'this server exports every device under its id'}`);
    if (id !== undefined) {
      const size = this.pool.deviceSize(id);
      if (size !== this.sizes.get(name)) throw new ThinError('E_INVALID', `cannot retarget export "${name}" to thin device ${id}: it has ${size} bytes, the export ${this.sizes.get(name)}`, { device: id });
    }
    s.id = small(id ?? UNBOUND);
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
    return this.resolve({ name, id: small(Number(name)) });
  }

  private resolve(s: ExportSpec): Export | undefined {
    const readOnly = this.readOnly || this.pool.readOnly;
    const dir = this.pool.dir;
    if (!this.fixed) {
      if (!this.pool.hasDevice(s.id)) return undefined;
      return { name: s.name, id: s.id, size: this.pool.deviceSize(s.id), readOnly, description: `thin device ${s.id} of pool ${dir}` };
    }
    if (s.id !== UNBOUND && !this.pool.hasDevice(s.id)) return undefined;
    // A fixed export's id is read live from its spec, so a retarget reaches open connections.
    return {
      name: s.name, size: this.sizes.get(s.name)!, readOnly,
      get id() { return s.id; },
      get description() { return s.id === UNBOUND ? `no device yet (pool ${dir})` : `thin device ${s.id} of pool ${dir}`; },
    };
  }
}

/**
 * `n` as V8 keeps a small integer (a Smi), when it is one. A number parsed from a name
 * that came off the wire can be a boxed 1.0 where a literal 1 is a Smi: the objects and
 * B-tree keys it reaches would then take other field representations than the warm-up
 * gave them, and the request path would deoptimise (docs/nbd.md, "Cold start"). Any
 * other value is returned as it is, for the caller's checks.
 */
function small(n: number): number {
  return n >= -(2 ** 30) && n < 2 ** 30 && Number.isInteger(n) ? n | 0 : n;
}

function checkName(name: string): void {
  if (name.includes('\0')) throw new ThinError('E_INVALID', 'an export name must not contain NUL');
  if (Buffer.byteLength(name, 'utf8') > MAX_STRING) throw new ThinError('E_INVALID', `export name is longer than ${MAX_STRING} bytes`);
}

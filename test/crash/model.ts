/**
 * The crash farm's model of what a pool's thin devices may hold after a crash, sector
 * by sector (512 bytes).
 *
 * Every write fills each of its sectors with a pattern naming the write (a tag) and the
 * sector, so a read-back sector says which write it came from, and a sector that is
 * neither zeros nor one whole pattern is garbage (a torn or misdirected write).
 * Operations are recorded with a start and an end position on one clock (a write log's
 * length, or an event counter); a flush that ended by the crash point makes durable every
 * operation that ended before the flush started. After a crash at point p, a sector must
 * hold the value of its last durable write (zeros if none) or of a write started after
 * that one before p: never an older value, never garbage. A device whose creation is
 * durable must exist (unless its deletion had started), one whose deletion is durable
 * must not; a snapshot starts with its origin's history, so "snapshots keep their
 * content" is the same rule.
 */
export const SECTOR = 512;

interface Entry { tag: number; start: number; end: number; fua?: boolean }
interface Span { start: number; end: number }
interface Device { size: number; created: Span; deleted?: Span; sectors: Map<number, Entry[]> }

/** Fill `buf` (whole sectors) with write `tag`'s pattern for sectors starting at `firstSector`. */
export function fillPattern(buf: Buffer, tag: number, firstSector: number): Buffer {
  for (let s = 0; s * SECTOR < buf.length; s++) {
    const o = s * SECTOR;
    const sector = firstSector + s;
    buf.writeUInt32LE(tag, o);
    buf.writeUInt32LE(sector, o + 4);
    const seed = (tag * 131 + sector * 31) & 255;
    for (let i = 8; i < SECTOR; i++) buf[o + i] = (seed + i * 7) & 255;
  }
  return buf;
}

/** The tag a sector holds: 0 for zeros, -1 for anything that is not one whole pattern. */
export function sectorTag(buf: Buffer, o: number, sector: number): number {
  let zero = true;
  for (let i = 0; i < SECTOR; i++) if (buf[o + i] !== 0) { zero = false; break; }
  if (zero) return 0;
  const tag = buf.readUInt32LE(o);
  if (buf.readUInt32LE(o + 4) !== sector) return -1;
  const seed = (tag * 131 + sector * 31) & 255;
  for (let i = 8; i < SECTOR; i++) if (buf[o + i] !== ((seed + i * 7) & 255)) return -1;
  return tag;
}

export class DiskModel {
  private readonly devices = new Map<number, Device>();
  private readonly flushes: Span[] = [];

  ids(): number[] {
    return [...this.devices.keys()];
  }

  has(id: number): boolean {
    const d = this.devices.get(id);
    return !!d && !d.deleted;
  }

  size(id: number): number {
    return this.devices.get(id)!.size;
  }

  create(id: number, size: number, start: number, end: number): void {
    this.devices.set(id, { size, created: { start, end }, sectors: new Map() });
  }

  snap(id: number, origin: number, start: number, end: number): void {
    const o = this.devices.get(origin)!;
    const sectors = new Map<number, Entry[]>();
    for (const [s, h] of o.sectors) sectors.set(s, h.map((e) => ({ ...e })));
    this.devices.set(id, { size: o.size, created: { start, end }, sectors });
  }

  delete(id: number, start: number, end: number): void {
    this.devices.get(id)!.deleted = { start, end };
  }

  /**
   * A write of whole sectors with `tag` (0: zeroing, as discard and write-zeroes do).
   * `end` is Infinity for a request never answered; `fua`: durable once answered.
   */
  write(id: number, offset: number, length: number, tag: number, start: number, end: number, fua = false): void {
    const d = this.devices.get(id)!;
    for (let s = offset / SECTOR; s < (offset + length) / SECTOR; s++) {
      let h = d.sectors.get(s);
      if (!h) d.sectors.set(s, (h = []));
      h.push({ tag, start, end, fua });
    }
  }

  /**
   * After a crash has been checked: what device `id` holds now (`content`) is its
   * committed state, durable at `at`, the base of the next crash point.
   */
  rebase(id: number, content: Buffer | undefined, at: number): void {
    const d = this.devices.get(id)!;
    if (!content) {
      d.deleted = { start: at, end: at };
      return;
    }
    d.deleted = undefined;
    d.created = { start: at, end: at };
    for (let s = 0; s * SECTOR < d.size; s++) {
      const tag = sectorTag(content, s * SECTOR, s);
      d.sectors.set(s, [{ tag, start: at, end: at }]);
    }
  }

  /** The operation recorded with `start` and an unknown end completed at `end`. */
  finish(start: number, end: number): void {
    for (const d of this.devices.values()) {
      if (d.created.start === start) d.created.end = end;
      if (d.deleted?.start === start) d.deleted.end = end;
      for (const h of d.sectors.values()) for (const e of h) if (e.start === start) e.end = end;
    }
  }

  /** A flush (or commit) that started at `start` and completed at `end`. */
  flush(start: number, end: number): void {
    this.flushes.push({ start, end });
  }

  /** Operations that ended at or before this position are durable at crash point p. */
  durableBefore(p: number): number {
    let d = -Infinity;
    for (const f of this.flushes) if (f.end <= p && f.start > d) d = f.start;
    return d;
  }

  /**
   * What is wrong with device `id` after a crash at p. `read(size)` returns its content,
   * or undefined when the device does not exist.
   */
  verify(id: number, p: number, read: (size: number) => Buffer | undefined): string[] {
    const d = this.devices.get(id)!;
    const D = this.durableBefore(p);
    if (d.created.start >= p) return [];
    const content = read(d.size);
    const mustExist = d.created.end <= D && !(d.deleted && d.deleted.start < p);
    const mustNotExist = !!d.deleted && d.deleted.end <= D;
    const when = `(created ${d.created.start}..${d.created.end}${d.deleted ? `, deleted ${d.deleted.start}..${d.deleted.end}` : ''}; durable up to ${D}, crash at ${p})`;
    if (!content) return mustExist ? [`device ${id}: its creation was durable, but it is gone ${when}`] : [];
    if (mustNotExist) return [`device ${id}: its deletion was durable, but it exists ${when}`];
    const bad: string[] = [];
    for (let s = 0; s * SECTOR < d.size && bad.length < 5; s++) {
      const got = sectorTag(content, s * SECTOR, s);
      const h = d.sectors.get(s) ?? [];
      let k = -1;
      for (let i = 0; i < h.length; i++) if (h[i].end <= D || (h[i].fua && h[i].end <= p)) k = i;
      const allowed = new Set<number>([k >= 0 ? h[k].tag : 0]);
      for (let i = k + 1; i < h.length; i++) if (h[i].start < p) allowed.add(h[i].tag);
      if (!allowed.has(got)) {
        bad.push(`device ${id} sector ${s}: holds ${got === -1 ? 'garbage (no whole write pattern)' : got === 0 ? 'zeros' : `write #${got}`}; allowed: ${[...allowed].map((t) => (t === 0 ? 'zeros' : `#${t}`)).join(', ')}${k >= 0 ? ` (#${h[k].tag} was durable)` : ''}`);
      }
    }
    return bad;
  }
}

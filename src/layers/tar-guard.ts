/**
 * Bounds on what a layer tar may ask of its reader, checked on the raw tar bytes on their
 * way to tar-stream's parser (apply.ts puts this stream in front of it).
 *
 * Contract:
 * - A PAX extended header (per member or global) or a GNU long name or long link member
 *   holds at most MAX_TAR_META bytes (1 MiB: the cap Go's archive/tar, which Docker and
 *   containerd read layers with, puts on them). A larger one fails before its body is
 *   read, since a tar parser must hold such a body whole.
 * - Every member size (the header's octal or base-256 field, or a PAX `size` record) is a
 *   whole number from 0 to 2^53-1. tar-stream 3 takes anything else (NaN, negative) as
 *   given and then waits forever for the member's end; here it is an error.
 * - The stream ends with an end-of-archive block (512 zero bytes; one is enough, as GNU
 *   tar accepts), after a whole member. Anything else is a truncated archive: a partial
 *   header, a member body cut short, members without the end block, or no bytes at all.
 * - Each failure is a TarGuardError naming the byte offset and the member; apply.ts turns
 *   it into E_PARSE naming the layer. What passes is handed on unchanged.
 * - Memory: one 512-byte header and at most one metadata body (<= MAX_TAR_META) are held;
 *   member bodies are passed on as they arrive.
 * - Member boundaries are found as tar-stream 3 finds them (a directory's size field is
 *   ignored; a PAX `size` record, merged over a global one only when a per-member PAX
 *   header exists, replaces the next member's size), so both see the same members.
 */
import { Transform, type TransformCallback } from 'node:stream';
import * as headers from 'tar-stream/headers';

/** Bytes a PAX header or a GNU long name/link member may hold. */
export const MAX_TAR_META = 1 << 20;

export class TarGuardError extends Error {
  constructor(message: string, readonly kind: 'truncated' | 'header_too_large' | 'bad_size' | 'bad_header', readonly offset: number) {
    super(message);
  }
}

type Meta = { type: string; size: number; parts: Buffer[]; got: number };
type Pax = Record<string, string>;

const META_TYPES = new Set(['pax-header', 'pax-global-header', 'gnu-long-path', 'gnu-long-link-path']);

/** Bytes of padding after a body of `size` bytes. */
const padding = (size: number) => (512 - (size % 512)) % 512;

export class TarGuard extends Transform {
  /** Tar bytes seen so far. */
  private pos = 0;
  private readonly head = Buffer.alloc(512);
  private headLen = 0;
  /** Offset of the header being read (for messages). */
  private headAt = 0;
  /** Body and padding bytes still to pass before the next header. */
  private skip = 0;
  private meta: Meta | undefined;
  private pax: Pax | null = null;
  private paxGlobal: Pax | null = null;
  private longName: string | undefined;
  /** The last member's name, for messages. */
  private member = '';
  private ended = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.scan(chunk);
    } catch (e) {
      cb(e as Error);
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const name = this.member ? `member "${this.member.slice(0, 200)}"` : 'its first member';
    let why: string | undefined;
    if (this.pos === 0) why = 'is empty (a layer tar holds at least the end-of-archive block)';
    else if (this.headLen > 0) why = `ends inside a header (${this.headLen} of 512 bytes at byte ${this.headAt})`;
    else if (this.skip > 0) why = `ends inside ${this.meta ? `a ${this.meta.type} header` : name}: ${this.skip} more bytes were due`;
    else if (!this.ended) why = `ends after ${name} without the end-of-archive block`;
    cb(why ? new TarGuardError(`is a truncated tar: it ${why} at byte ${this.pos}`, 'truncated', this.pos) : null);
  }

  private scan(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        const m = this.meta;
        if (m && m.got < m.size) {
          const take = Math.min(n, m.size - m.got);
          m.parts.push(Buffer.from(chunk.subarray(i, i + take)));
          m.got += take;
        }
        this.skip -= n;
        this.pos += n;
        i += n;
        if (this.skip === 0 && m) this.endMeta(m);
        continue;
      }
      if (this.headLen === 0) this.headAt = this.pos;
      const n = Math.min(512 - this.headLen, chunk.length - i);
      chunk.copy(this.head, this.headLen, i, i + n);
      this.headLen += n;
      this.pos += n;
      i += n;
      if (this.headLen === 512) {
        this.headLen = 0;
        this.header();
      }
    }
  }

  private fail(kind: TarGuardError['kind'], what: string): never {
    throw new TarGuardError(`${what} (tar header at byte ${this.headAt})`, kind, this.headAt);
  }

  private checkSize(size: unknown, what: string): number {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) this.fail('bad_size', `has ${what} ${String(size)}, which is not a byte count`);
    return size;
  }

  private header(): void {
    let h: headers.DecodedHeader | null;
    try {
      h = headers.decode(this.head, 'utf-8', false);
    } catch (e) {
      this.fail('bad_header', `is not a valid tar: ${(e as Error).message}`);
    }
    if (!h) { this.ended = true; return; } // an end-of-archive block
    this.ended = false;
    if (META_TYPES.has(h.type)) {
      const size = this.checkSize(h.size, `a ${h.type} header of size`);
      if (size > MAX_TAR_META) this.fail('header_too_large', `has a ${h.type} header of ${size} bytes; thinsim reads at most ${MAX_TAR_META} (Go's archive/tar, which Docker uses, has the same cap)`);
      if (size === 0) return; // tar-stream ignores an empty one
      this.meta = { type: h.type, size, parts: [], got: 0 };
      this.skip = size + padding(size);
      return;
    }
    const name = this.pax?.path ?? this.longName ?? h.name;
    this.member = name;
    let size = this.checkSize(h.size, `member "${name.slice(0, 200)}" with size`);
    if (this.pax?.size) {
      if (!/^\d+$/.test(this.pax.size)) this.fail('bad_size', `has member "${name.slice(0, 200)}" with PAX size "${this.pax.size.slice(0, 40)}", which is not a byte count`);
      size = this.checkSize(Number(this.pax.size), `member "${name.slice(0, 200)}" with PAX size`);
    }
    this.pax = null;
    this.longName = undefined;
    this.skip = size === 0 || h.type === 'directory' ? 0 : size + padding(size);
  }

  private endMeta(m: Meta): void {
    this.meta = undefined;
    const body = Buffer.concat(m.parts);
    if (m.type === 'pax-header') this.pax = { ...(this.paxGlobal ?? {}), ...headers.decodePax(body) };
    else if (m.type === 'pax-global-header') this.paxGlobal = headers.decodePax(body);
    else if (m.type === 'gnu-long-path') this.longName = headers.decodeLongPath(body, 'utf-8');
  }
}

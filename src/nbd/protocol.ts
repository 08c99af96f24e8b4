/**
 * NBD wire format: pure parse and serialise over Buffers, no I/O, no state.
 *
 * Contract:
 * - Covers fixed newstyle negotiation (greeting, client flags, option requests and
 *   replies, NBD_INFO_* payloads, meta-context queries) and the transmission phase with
 *   compact headers (28-byte requests, simple replies, structured reply chunks).
 *   Extended headers are not spoken: NBD_OPT_EXTENDED_HEADERS is answered as unknown.
 * - Everything is big-endian (network order). 64-bit fields are bigint; the request
 *   cookie stays 8 raw bytes so it is echoed exactly as the client sent it.
 * - Parsers take exactly the bytes of one message part and throw ThinError('E_PARSE')
 *   naming the field when the bytes cannot be what the protocol allows; they never
 *   read past the buffer they are given. Serialisers return fresh Buffers.
 * - Numbers come from the NBD protocol document (NetworkBlockDevice/nbd doc/proto.md);
 *   option numbers 9 and 10 are the meta-context options as clients send them today.
 */
import { ThinError } from '../errors';

// ---------------------------------------------------------------- magics and sizes

/** 'NBDMAGIC': first 8 bytes the server sends. */
export const INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': second greeting word and the prefix of every option request. */
export const OPTION_MAGIC = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const GREETING_SIZE = 18;
export const CLIENT_FLAGS_SIZE = 4;
export const OPTION_HEADER_SIZE = 16;
export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;
/** Bytes of zero padding after an NBD_OPT_EXPORT_NAME reply, unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PADDING = 124;
/** The protocol's hard limit for a string (export name, error message, context name). */
export const MAX_STRING = 4096;

// ---------------------------------------------------------------- flags and numbers

/** Handshake flags (server -> client, 16 bits). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
/** Client flags (client -> server, 32 bits). */
export const ClientFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
export const KNOWN_CLIENT_FLAGS = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;

export const Opt = {
  EXPORT_NAME: 1, ABORT: 2, LIST: 3, PEEK_EXPORT: 4, STARTTLS: 5, INFO: 6, GO: 7,
  STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10, EXTENDED_HEADERS: 11,
} as const;

const ERR = 0x80000000;
export const Rep = {
  ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1, ERR_POLICY: ERR + 2, ERR_INVALID: ERR + 3, ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5, ERR_UNKNOWN: ERR + 6, ERR_SHUTDOWN: ERR + 7, ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags (16 bits, per export). */
export const TxFlag = {
  HAS_FLAGS: 1 << 0, READ_ONLY: 1 << 1, SEND_FLUSH: 1 << 2, SEND_FUA: 1 << 3, ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5, SEND_WRITE_ZEROES: 1 << 6, SEND_DF: 1 << 7, CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9, SEND_CACHE: 1 << 10, SEND_FAST_ZERO: 1 << 11,
} as const;

export const Cmd = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;

export const CmdFlag = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

export const ReplyType = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 0x8001, ERROR_OFFSET: 0x8002 } as const;
export const REPLY_FLAG_DONE = 1 << 0;

/** Error values allowed on the wire (errno numbers as Linux has them). */
export const Errno = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** base:allocation status bits. */
export const State = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;
export const BASE_ALLOCATION = 'base:allocation';

// ---------------------------------------------------------------- handshake

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function greeting(flags: number): Buffer {
  const b = Buffer.alloc(GREETING_SIZE);
  b.writeBigUInt64BE(INIT_MAGIC, 0);
  b.writeBigUInt64BE(OPTION_MAGIC, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export function parseClientFlags(b: Buffer): number {
  need(b, CLIENT_FLAGS_SIZE, 'client flags');
  return b.readUInt32BE(0);
}

export interface OptionHeader { option: number; length: number }

/** C: IHAVEOPT, 32-bit option, 32-bit data length. */
export function parseOptionHeader(b: Buffer): OptionHeader {
  need(b, OPTION_HEADER_SIZE, 'option header');
  const magic = b.readBigUInt64BE(0);
  if (magic !== OPTION_MAGIC) throw parseError(`option magic is 0x${magic.toString(16)}, not IHAVEOPT`);
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

/** S: reply magic, option, reply type, length, data. */
export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply with a human-readable message (truncated to the string limit). */
export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, utf8Limited(message));
}

/** The reply that ends negotiation after NBD_OPT_EXPORT_NAME: size, flags, optional padding. */
export function exportNameReply(size: bigint, txFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING));
  b.writeBigUInt64BE(size, 0);
  b.writeUInt16BE(txFlags, 8);
  return b;
}

/** NBD_REP_SERVER data: 32-bit name length, name, then a description for humans. */
export function serverEntry(name: string, description = ''): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: size and transmission flags. */
export function infoExport(size: bigint, txFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.EXPORT, 0);
  b.writeBigUInt64BE(size, 2);
  b.writeUInt16BE(txFlags, 10);
  return b;
}

export function infoName(name: string): Buffer {
  return Buffer.concat([u16(Info.NAME), Buffer.from(name, 'utf8')]);
}

export function infoDescription(description: string): Buffer {
  return Buffer.concat([u16(Info.DESCRIPTION), utf8Limited(description)]);
}

export function infoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** NBD_REP_META_CONTEXT data: 32-bit context id, name. */
export function metaContextEntry(id: number, name: string): Buffer {
  return Buffer.concat([u32(id), Buffer.from(name, 'utf8')]);
}

export interface InfoRequest { name: string; infos: number[] }

/** NBD_OPT_INFO / NBD_OPT_GO data: 32-bit name length, name, 16-bit count, count x 16-bit info type. */
export function parseInfoRequest(data: Buffer): InfoRequest {
  const r = new Cursor(data, 'NBD_OPT_GO/INFO');
  const name = r.string32('export name');
  const n = r.u16('number of info requests');
  const infos: number[] = [];
  for (let i = 0; i < n; i++) infos.push(r.u16(`info request ${i}`));
  r.end();
  return { name, infos };
}

export function infoRequest(name: string, infos: number[] = []): Buffer {
  return Buffer.concat([string32(name), u16(infos.length), ...infos.map(u16)]);
}

export interface MetaContextRequest { name: string; queries: string[] }

/** NBD_OPT_{LIST,SET}_META_CONTEXT data: name (32-bit length), 32-bit query count, queries (32-bit length each). */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest {
  const r = new Cursor(data, 'meta context option');
  const name = r.string32('export name');
  const n = r.u32('number of queries');
  // Each query takes at least its 4-byte length: a count the data cannot hold is a lie.
  if (n > r.remaining / 4) throw parseError(`meta context option: ${n} queries cannot fit in ${r.remaining} bytes`);
  const queries: string[] = [];
  for (let i = 0; i < n; i++) queries.push(r.string32(`query ${i}`));
  r.end();
  return { name, queries };
}

export function metaContextRequest(name: string, queries: string[]): Buffer {
  return Buffer.concat([string32(name), u32(queries.length), ...queries.map(string32)]);
}

/** The export name of NBD_OPT_EXPORT_NAME (the whole option data). */
export function parseExportName(data: Buffer): string {
  return decodeString(data, 'export name');
}

// ---------------------------------------------------------------- transmission

export interface Request {
  flags: number;
  type: number;
  /** The client's 64-bit handle, kept as the 8 bytes it sent (echoed verbatim). */
  cookie: Buffer;
  offset: bigint;
  length: number;
}

/** C: magic, 16-bit flags, 16-bit type, 64-bit cookie, 64-bit offset, 32-bit length. */
export function parseRequest(b: Buffer): Request {
  need(b, REQUEST_SIZE, 'request');
  const magic = b.readUInt32BE(0);
  if (magic !== REQUEST_MAGIC) throw parseError(`request magic is 0x${magic.toString(16)}, not 0x${REQUEST_MAGIC.toString(16)}`);
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: Buffer.from(b.subarray(8, 16)),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}

export function request(type: number, flags: number, cookie: Buffer | bigint, offset: bigint | number, length: number): Buffer {
  const b = Buffer.alloc(REQUEST_SIZE);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  if (typeof cookie === 'bigint') b.writeBigUInt64BE(cookie, 8);
  else cookie.copy(b, 8, 0, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

/** S: magic, 32-bit error, cookie (data, if any, follows separately). */
export function simpleReply(error: number, cookie: Buffer): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_SIZE);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  cookie.copy(b, 8, 0, 8);
  return b;
}

/** S: magic, 16-bit flags, 16-bit type, cookie, 32-bit payload length (payload follows). */
export function structuredHeader(flags: number, type: number, cookie: Buffer, payloadLength: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE);
  writeStructuredHeader(b, 0, flags, type, cookie, payloadLength);
  return b;
}

function writeStructuredHeader(b: Buffer, at: number, flags: number, type: number, cookie: Buffer, payloadLength: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  cookie.copy(b, at + 8, 0, 8);
  b.writeUInt32BE(payloadLength, at + 16);
}

/** NBD_REPLY_TYPE_NONE with DONE: success of a request that returns no data. */
export function noneChunk(cookie: Buffer): Buffer {
  return structuredHeader(REPLY_FLAG_DONE, ReplyType.NONE, cookie, 0);
}

/** Header and offset of an NBD_REPLY_TYPE_OFFSET_DATA chunk carrying `dataLength` bytes (the data follows). */
export function offsetDataHeader(cookie: Buffer, offset: bigint, dataLength: number, done: boolean): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + 8);
  writeStructuredHeader(b, 0, done ? REPLY_FLAG_DONE : 0, ReplyType.OFFSET_DATA, cookie, 8 + dataLength);
  b.writeBigUInt64BE(offset, STRUCTURED_HEADER_SIZE);
  return b;
}

/** NBD_REPLY_TYPE_ERROR with DONE: 32-bit error, 16-bit message length, message. */
export function errorChunk(cookie: Buffer, error: number, message = ''): Buffer {
  const m = utf8Limited(message, 0xffff);
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + 6 + m.length);
  writeStructuredHeader(b, 0, REPLY_FLAG_DONE, ReplyType.ERROR, cookie, 6 + m.length);
  b.writeUInt32BE(error, STRUCTURED_HEADER_SIZE);
  b.writeUInt16BE(m.length, STRUCTURED_HEADER_SIZE + 4);
  m.copy(b, STRUCTURED_HEADER_SIZE + 6);
  return b;
}

export interface Extent { length: number; flags: number }

/** NBD_REPLY_TYPE_BLOCK_STATUS: 32-bit context id, then (32-bit length, 32-bit flags) per extent. */
export function blockStatusChunk(cookie: Buffer, contextId: number, extents: readonly Extent[], done: boolean): Buffer {
  if (extents.length === 0) throw new ThinError('E_INVALID', 'a block status chunk needs at least one extent');
  const payload = 4 + 8 * extents.length;
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + payload);
  writeStructuredHeader(b, 0, done ? REPLY_FLAG_DONE : 0, ReplyType.BLOCK_STATUS, cookie, payload);
  b.writeUInt32BE(contextId, STRUCTURED_HEADER_SIZE);
  let at = STRUCTURED_HEADER_SIZE + 4;
  for (const e of extents) {
    b.writeUInt32BE(e.length, at);
    b.writeUInt32BE(e.flags, at + 4);
    at += 8;
  }
  return b;
}

// ---------------------------------------------------------------- helpers

function parseError(message: string): ThinError {
  return new ThinError('E_PARSE', `NBD: ${message}`);
}

function need(b: Buffer, n: number, what: string): void {
  if (b.length < n) throw parseError(`${what} is ${b.length} bytes, needs ${n}`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeString(b: Buffer, what: string): string {
  if (b.length > MAX_STRING) throw parseError(`${what} is ${b.length} bytes, more than the protocol's ${MAX_STRING}`);
  let s: string;
  try {
    s = utf8.decode(b);
  } catch {
    throw parseError(`${what} is not valid UTF-8`);
  }
  if (s.includes('\0')) throw parseError(`${what} contains a NUL character`);
  return s;
}

/** UTF-8 bytes of `s`, cut on a character boundary to at most `limit` bytes. */
function utf8Limited(s: string, limit = MAX_STRING): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length <= limit) return b;
  let end = limit;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  b = b.subarray(0, end);
  return b;
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

function string32(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([u32(b.length), b]);
}

/** Bounds-checked sequential reads over one option's data. */
class Cursor {
  private at = 0;
  constructor(private readonly b: Buffer, private readonly what: string) {}

  get remaining(): number {
    return this.b.length - this.at;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  string32(field: string): string {
    const n = this.u32(`${field} length`);
    this.need(n, field);
    const s = decodeString(this.b.subarray(this.at, this.at + n), `${this.what}: ${field}`);
    this.at += n;
    return s;
  }

  end(): void {
    if (this.at !== this.b.length) throw parseError(`${this.what}: ${this.b.length - this.at} bytes left over after the last field`);
  }

  private need(n: number, field: string): void {
    if (n > this.remaining) throw parseError(`${this.what}: ${field} needs ${n} bytes, only ${this.remaining} left`);
  }
}

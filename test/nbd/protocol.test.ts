/**
 * src/nbd/protocol.ts against byte layouts written out by hand from the NBD protocol
 * document (magic numbers, field order and widths), not from the serialisers themselves;
 * and the parsers' refusals of malformed input (short, overlong, lying counts, bad UTF-8).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as P from '../../src/nbd/protocol';
import { isThinError } from '../../src/errors';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const parseFails = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => isThinError(e, 'E_PARSE') && re.test((e as Error).message));

test('greeting: NBDMAGIC, IHAVEOPT, 16-bit flags', () => {
  assert.deepEqual(P.greeting(3), hex('4e42444d41474943 49484156454f5054 0003'));
});

test('client flags and option header', () => {
  assert.equal(P.parseClientFlags(hex('00000003')), 3);
  parseFails(() => P.parseClientFlags(hex('0000')), /client flags/);
  assert.deepEqual(P.parseOptionHeader(hex('49484156454f5054 00000007 00000010')), { option: 7, length: 16 });
  parseFails(() => P.parseOptionHeader(hex('49484156454f5055 00000007 00000010')), /IHAVEOPT/);
  parseFails(() => P.parseOptionHeader(hex('49484156454f5054 00000007')), /16/);
});

test('option replies', () => {
  assert.deepEqual(P.optionReply(P.Opt.STRUCTURED_REPLY, P.Rep.ACK), hex('0003e889045565a9 00000008 00000001 00000000'));
  assert.deepEqual(P.optionError(99, P.Rep.ERR_UNSUP, 'no'), hex('0003e889045565a9 00000063 80000001 00000002 6e6f'));
  assert.equal(P.Rep.ERR_UNKNOWN, 0x80000006);
  assert.equal(P.Rep.ERR_TOO_BIG, 0x80000009);
  // NBD_REP_SERVER: name length, name, then free text.
  assert.deepEqual(P.serverEntry('ab', 'x'), hex('00000002 6162 78'));
  assert.deepEqual(P.metaContextEntry(1, 'base:allocation'), Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]));
  const longMsg = P.optionError(1, P.Rep.ERR_INVALID, 'é'.repeat(3000));
  assert.equal(longMsg.readUInt32BE(16), 4096, 'error strings are cut to 4096 bytes on a character boundary');
});

test('EXPORT_NAME reply: size, flags, 124 zero bytes unless NO_ZEROES', () => {
  const r = P.exportNameReply(0x0102030405060708n, 0x0d6d, false);
  assert.equal(r.length, 8 + 2 + 124);
  assert.deepEqual(r.subarray(0, 10), hex('0102030405060708 0d6d'));
  assert.ok(r.subarray(10).every((b) => b === 0));
  assert.equal(P.exportNameReply(1n, 1, true).length, 10);
});

test('NBD_INFO payloads', () => {
  assert.deepEqual(P.infoExport(1n << 40n, 0x0001), hex('0000 0000010000000000 0001'));
  assert.deepEqual(P.infoBlockSize(1, 65536, 32 << 20), hex('0003 00000001 00010000 02000000'));
  assert.deepEqual(P.infoName('x'), hex('0001 78'));
  assert.deepEqual(P.infoDescription('d'), hex('0002 64'));
});

test('GO/INFO data: name, count, info types', () => {
  assert.deepEqual(P.parseInfoRequest(hex('00000001 31 0002 0003 0001')), { name: '1', infos: [3, 1] });
  assert.deepEqual(P.parseInfoRequest(hex('00000000 0000')), { name: '', infos: [] });
  parseFails(() => P.parseInfoRequest(hex('00000005 31 0000')), /export name needs 5 bytes/);
  parseFails(() => P.parseInfoRequest(hex('00000001 31 0002 0003')), /info request 1/);
  parseFails(() => P.parseInfoRequest(hex('00000001 31 0000 00')), /left over/);
  parseFails(() => P.parseInfoRequest(hex('00000002 c328 0000')), /UTF-8/);
  parseFails(() => P.parseInfoRequest(hex('00000002 6100 0000')), /NUL/);
  assert.deepEqual(P.infoRequest('1', [3]), hex('00000001 31 0001 0003'));
});

test('meta context data: name, query count, queries', () => {
  const q = hex('00000001 31 00000002 0000000f') ;
  const data = Buffer.concat([q, Buffer.from('base:allocation'), hex('00000005'), Buffer.from('base:')]);
  assert.deepEqual(P.parseMetaContextRequest(data), { name: '1', queries: ['base:allocation', 'base:'] });
  assert.deepEqual(P.parseMetaContextRequest(hex('00000000 00000000')), { name: '', queries: [] });
  parseFails(() => P.parseMetaContextRequest(hex('00000000 ffffffff')), /cannot fit/);
  parseFails(() => P.parseMetaContextRequest(hex('00000000 00000001 00000010 6162')), /query 0 needs 16/);
  parseFails(() => P.parseMetaContextRequest(Buffer.concat([hex('00001001'), Buffer.alloc(4097, 0x61), hex('00000000')])), /more than the protocol's 4096/);
  assert.deepEqual(P.metaContextRequest('1', ['base:']), hex('00000001 31 00000001 00000005 626173653a'));
});

test('requests: fields in order, cookie kept as raw bytes', () => {
  const raw = hex('25609513 0001 0001 deadbeefcafef00d 0000000000010000 00001000');
  const r = P.parseRequest(raw);
  assert.deepEqual(r, { flags: 1, type: 1, cookie: hex('deadbeefcafef00d'), offset: 0x10000n, length: 4096 });
  raw.fill(0, 8, 16);
  assert.deepEqual(r.cookie, hex('deadbeefcafef00d'), 'the parsed cookie does not alias the input buffer');
  assert.deepEqual(P.request(P.Cmd.WRITE, P.CmdFlag.FUA, hex('deadbeefcafef00d'), 0x10000n, 4096), hex('25609513 0001 0001 deadbeefcafef00d 0000000000010000 00001000'));
  assert.deepEqual(P.request(P.Cmd.READ, 0, 0xffffffffffffffffn, 0, 0).subarray(8, 16), hex('ffffffffffffffff'));
  parseFails(() => P.parseRequest(hex('25609514 0000 0000 0000000000000000 0000000000000000 00000000')), /request magic/);
  parseFails(() => P.parseRequest(hex('25609513 0000')), /28/);
  assert.equal(P.parseRequest(hex('25609513 0000 0000 0000000000000000 ffffffffffffffff ffffffff')).offset, 0xffffffffffffffffn, '64-bit offsets survive');
});

test('simple and structured replies', () => {
  const cookie = hex('0102030405060708');
  assert.deepEqual(P.simpleReply(22, cookie), hex('67446698 00000016 0102030405060708'));
  assert.deepEqual(P.noneChunk(cookie), hex('668e33ef 0001 0000 0102030405060708 00000000'));
  assert.deepEqual(P.offsetDataHeader(cookie, 512n, 4096, true), hex('668e33ef 0001 0001 0102030405060708 00001008 0000000000000200'));
  assert.deepEqual(P.errorChunk(cookie, 28, 'full'), hex('668e33ef 0001 8001 0102030405060708 0000000a 0000001c 0004 66756c6c'));
  assert.deepEqual(
    P.blockStatusChunk(cookie, 1, [{ length: 65536, flags: 0 }, { length: 131072, flags: 3 }], true),
    hex('668e33ef 0001 0005 0102030405060708 00000014 00000001 00010000 00000000 00020000 00000003'),
  );
  assert.throws(() => P.blockStatusChunk(cookie, 1, [], true), /at least one extent/);
});

test('numbers clients rely on', () => {
  assert.equal(P.Opt.LIST_META_CONTEXT, 9);
  assert.equal(P.Opt.SET_META_CONTEXT, 10);
  assert.equal(P.TxFlag.SEND_FAST_ZERO, 0x800);
  assert.equal(P.TxFlag.CAN_MULTI_CONN, 0x100);
  assert.equal(P.CmdFlag.FAST_ZERO, 0x10);
  assert.equal(P.Errno.ENOTSUP, 95);
  assert.equal(P.Errno.ESHUTDOWN, 108);
});

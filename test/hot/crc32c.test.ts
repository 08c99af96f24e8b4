/**
 * CRC-32C known answers: spec §2.1 (thin_check printed 1490015127 for an all-zero
 * superblock) and the RFC 3720 (iSCSI) appendix B.4 vectors, for the twin and the addon.
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { eachImpl, unaligned } from './impls';
import { crc32cSlice8 } from '../../src/hot';

const SALT = { superblock: 160774, btree: 121107, bitmap: 240779, index: 160478 };

/** Standard CRC-32C = raw register with the final inversion applied. */
const standard = (raw: number): number => (raw ^ 0xffffffff) >>> 0;

test('standard check value crc32c("123456789") = 0xE3069283', (t) =>
  eachImpl(t, (impl) => {
    assert.equal(standard(impl.crc32c(Buffer.from('123456789'))), 0xe3069283);
    assert.equal(standard(impl.crc32c(unaligned(Buffer.from('123456789'), 5))), 0xe3069283);
  }));

test('RFC 3720 B.4 vectors', (t) =>
  eachImpl(t, (impl) => {
    const asc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const desc = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));
    assert.equal(standard(impl.crc32c(Buffer.alloc(32, 0x00))), 0x8a9136aa);
    assert.equal(standard(impl.crc32c(Buffer.alloc(32, 0xff))), 0x62a8ab43);
    assert.equal(standard(impl.crc32c(asc)), 0x46dd794e);
    assert.equal(standard(impl.crc32c(desc)), 0x113fdb5c);
  }));

test('spec §2.1: all-zero 4096-byte block checksums for each salt', (t) =>
  eachImpl(t, (impl) => {
    const block = Buffer.alloc(4096);
    assert.equal(impl.crc32c(block.subarray(4)), 0x58cda791, 'raw register after 4092 zero bytes');
    assert.equal(impl.blockChecksum(block, SALT.superblock), 1490015127);
    assert.equal(impl.blockChecksum(block, SALT.btree), 0x58cc7e82);
    assert.equal(impl.blockChecksum(block, SALT.bitmap), 0x58ce0b1a);
    assert.equal(impl.blockChecksum(block, SALT.index), 0x58cfd54f);
    // The stored bytes are the LE checksum: `97 d3 cf 58` for the superblock.
    const stored = Buffer.alloc(4);
    stored.writeUInt32LE(impl.blockChecksum(block, SALT.superblock));
    assert.deepEqual([...stored], [0x97, 0xd3, 0xcf, 0x58]);
    // The checksum field itself is not covered.
    block.writeUInt32LE(0xdeadbeef, 0);
    assert.equal(impl.blockChecksum(block, SALT.superblock), 1490015127);
  }));

test('crc32c is chainable through init and returns an unsigned number', (t) =>
  eachImpl(t, (impl) => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog');
    const whole = impl.crc32c(data);
    assert.equal(impl.crc32c(data.subarray(13), impl.crc32c(data.subarray(0, 13))), whole);
    assert.ok(whole >= 0 && whole <= 0xffffffff);
    assert.equal(impl.crc32c(Buffer.alloc(0)), 0xffffffff);
    assert.equal(impl.crc32c(Buffer.alloc(0), 0), 0);
    assert.equal(standard(impl.crc32c(Buffer.from('a'))), 0xc1d04330);
  }));

test('slice-by-8 twin agrees with the byte-table twin', () => {
  assert.equal(standard(crc32cSlice8(Buffer.from('123456789'))), 0xe3069283);
  assert.equal((crc32cSlice8(Buffer.alloc(4096).subarray(4)) ^ SALT.superblock) >>> 0, 1490015127);
});

/**
 * readNoWait: a read that never waits for the disk. Checked against the file's bytes:
 * the native one reads what the page cache holds (a file just written is cached), short
 * only at the end of the file, and never changes the file; "-1" (not without waiting)
 * is always allowed, and is the twin's only answer. Bad arguments throw E_INVALID on
 * both; a bad descriptor is an error, not "-1".
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { eachImpl, unaligned } from './impls';
import { isThinError } from '../../src/errors';
import { pattern } from '../../support/random';

test('readNoWait reads cached bytes exactly, short only at the end of the file', (t) =>
  eachImpl(t, (impl) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-nowait-'));
    try {
      const file = path.join(dir, 'f');
      const data = pattern(7, 300_000);
      fs.writeFileSync(file, data);
      const fd = fs.openSync(file, 'r');
      let served = 0;
      try {
        for (const [off, len] of [[0, 4096], [12_345, 65_536], [250_000, 50_000], [290_000, 20_000], [300_000, 10], [400_000, 4096]]) {
          const buf = unaligned(new Uint8Array(len).fill(0xab), 3);
          const n = impl.readNoWait(fd, buf, off);
          if (!impl.native) {
            assert.equal(n, -1, 'the twin cannot read without waiting');
            continue;
          }
          // "Not without waiting" is always allowed (pages just written could be evicted);
          // then nothing is promised about buf.
          if (n === -1) continue;
          served++;
          const want = data.subarray(Math.min(off, data.length), Math.min(off + len, data.length));
          assert.equal(n, want.length, `bytes read at ${off}+${len}`);
          assert.ok(Buffer.from(buf.subarray(0, n)).equals(want), `bytes at ${off}+${len} match the file`);
          assert.ok(buf.subarray(n).every((b) => b === 0xab), 'nothing written past what was read');
        }
      } finally {
        fs.closeSync(fd);
      }
      if (impl.native) assert.ok(served > 0, 'the page cache served a file just written');
      assert.ok(fs.readFileSync(file).equals(data), 'the file is unchanged');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));

test('readNoWait refuses bad arguments and reports a bad descriptor as an error', (t) =>
  eachImpl(t, (impl) => {
    const bad = (e: unknown) => isThinError(e, 'E_INVALID');
    assert.throws(() => impl.readNoWait(-1, Buffer.alloc(1), 0), bad, 'negative fd');
    assert.throws(() => impl.readNoWait(0, 'x' as unknown as Uint8Array, 0), bad, 'buf not bytes');
    assert.throws(() => impl.readNoWait(0, Buffer.alloc(1), -5), bad, 'negative offset');
    assert.throws(() => impl.readNoWait(0, Buffer.alloc(8), 2 ** 53 - 4), bad, 'offset + length past 2^53');
    if (impl.native) {
      // A descriptor number nothing has open (a just-closed one could be reused at once).
      assert.throws(() => impl.readNoWait(4000, Buffer.alloc(8), 0), (e) => isThinError(e, 'E_IO'), 'bad descriptor');
    }
  }));

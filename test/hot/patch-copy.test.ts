/**
 * patchCopyAsync, on the addon and the twin alike, against a byte model: the
 * destination chunk is the source chunk with the patch laid over it; bytes past the
 * source's end read as zeros; nothing outside [dst, dst+len) changes; bad arguments
 * throw E_INVALID synchronously; I/O errors reject with E_IO.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { eachImpl } from './impls';
import { isThinError } from '../../src/errors';

const CHUNK = 64 * 1024;

test('patchCopyAsync lays the patch over a copy of the source chunk (model check)', (t) =>
  eachImpl(t, async (impl) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-patch-'));
    try {
      await fc.assert(fc.asyncProperty(
        fc.nat(3), fc.integer({ min: 4, max: 7 }), fc.nat(CHUNK), fc.integer({ min: 0, max: 3 * 4096 }), fc.integer({ min: 0, max: CHUNK }),
        async (srcChunk, dstChunk, patchOff0, patchLen0, cut) => {
          const file = path.join(dir, 'f');
          // A file of 8 chunks of distinct bytes, cut short so the source may end early.
          const model = Buffer.alloc(8 * CHUNK);
          for (let i = 0; i < model.length; i++) model[i] = (i * 7 + (i >> 16)) & 0xff;
          const fileLen = srcChunk === 3 ? 3 * CHUNK + cut : model.length;
          fs.writeFileSync(file, model.subarray(0, fileLen));
          if (fileLen < model.length) model.fill(0, fileLen);
          const patchOff = Math.min(patchOff0, CHUNK);
          const patch = Buffer.alloc(Math.min(patchLen0, CHUNK - patchOff), 0xee);
          const fd = fs.openSync(file, 'r+');
          try {
            const src = srcChunk * CHUNK;
            const dst = dstChunk * CHUNK;
            const p = impl.patchCopyAsync(fd, src, dst, CHUNK, patch, patchOff);
            patch.fill(0x11); // the call copied it: reusing it at once is safe
            assert.equal(await p, CHUNK);
            const want = Buffer.from(model.subarray(0, Math.max(fileLen, dst + CHUNK)));
            model.copy(want, dst, src, src + CHUNK);
            want.fill(0xee, dst + patchOff, dst + patchOff + Math.min(patchLen0, CHUNK - patchOff));
            const got = fs.readFileSync(file);
            assert.equal(got.length, want.length, 'file length');
            assert.ok(got.equals(want), 'bytes match the model');
          } finally {
            fs.closeSync(fd);
          }
        },
      ), { numRuns: 40 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));

test('patchCopyAsync refuses bad arguments synchronously and rejects I/O errors', (t) =>
  eachImpl(t, async (impl) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-patch-'));
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, Buffer.alloc(4 * CHUNK, 1));
    const fd = fs.openSync(file, 'r');
    try {
      const bad = (e: unknown) => isThinError(e, 'E_INVALID');
      assert.throws(() => impl.patchCopyAsync(fd, 0, CHUNK, CHUNK, Buffer.alloc(10), CHUNK - 5), bad, 'patch past len');
      assert.throws(() => impl.patchCopyAsync(fd, 0, CHUNK / 2, CHUNK, Buffer.alloc(1), 0), bad, 'overlap');
      assert.throws(() => impl.patchCopyAsync(fd, -1, CHUNK, CHUNK, Buffer.alloc(1), 0), bad, 'negative offset');
      assert.throws(() => impl.patchCopyAsync(fd, 0, CHUNK, CHUNK, 'x' as unknown as Uint8Array, 0), bad, 'patch not bytes');
      // A read-only descriptor: the write fails with EBADF, as E_IO.
      await assert.rejects(impl.patchCopyAsync(fd, 0, 2 * CHUNK, CHUNK, Buffer.alloc(4096), 0), (e) => isThinError(e, 'E_IO'));
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));

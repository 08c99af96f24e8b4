/**
 * Chunk I/O on real temp files: copies (sync, async, concurrent, across filesystems),
 * EOF behaviour, errno errors, zeroing and hole punching (checked through st_blocks),
 * isZero and aligned buffers.
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { eachImpl } from './impls';
import { nativeImpl, ZERO_METHOD } from '../../src/hot';
import { isThinError } from '../../src/errors';

function withDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-hot-chunk-'));
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

function pattern(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

test('copyRange: a 64 KiB chunk between files, at unaligned offsets', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      const src = pattern(1 << 20);
      fs.writeFileSync(path.join(dir, 'a'), src);
      const fin = fs.openSync(path.join(dir, 'a'), 'r');
      const fout = fs.openSync(path.join(dir, 'b'), 'w+');
      try {
        assert.equal(impl.copyRange(fin, 65536, fout, 0, 65536), 65536);
        assert.equal(impl.copyRange(fin, 12345, fout, 70001, 100000), 100000);
        assert.equal(impl.copyRange(fin, 0, fout, 0, 0), 0);
      } finally {
        fs.closeSync(fin);
        fs.closeSync(fout);
      }
      const out = fs.readFileSync(path.join(dir, 'b'));
      assert.equal(out.length, 170001);
      assert.ok(out.subarray(0, 65536).equals(src.subarray(65536, 131072)));
      assert.ok(out.subarray(65536, 70001).every((b) => b === 0), 'gap is a hole');
      assert.ok(out.subarray(70001).equals(src.subarray(12345, 112345)));
    })()));

test('copyRange: stops at EOF of the source and returns the bytes copied', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      fs.writeFileSync(path.join(dir, 'a'), pattern(1000));
      fs.writeFileSync(path.join(dir, 'b'), Buffer.alloc(3000, 0x11));
      const fin = fs.openSync(path.join(dir, 'a'), 'r');
      const fout = fs.openSync(path.join(dir, 'b'), 'r+');
      try {
        assert.equal(impl.copyRange(fin, 900, fout, 0, 500), 100);
        assert.equal(impl.copyRange(fin, 1000, fout, 0, 500), 0);
        assert.equal(impl.copyRange(fin, 5000, fout, 0, 500), 0);
      } finally {
        fs.closeSync(fin);
        fs.closeSync(fout);
      }
      const out = fs.readFileSync(path.join(dir, 'b'));
      assert.ok(out.subarray(0, 100).equals(pattern(1000).subarray(900)));
      assert.ok(out.subarray(100).every((b) => b === 0x11), 'nothing past the short count is touched');
    })()));

test('copyRange: across filesystems (tmp -> /dev/shm) takes the fallback path', (t) => {
  if (!fs.existsSync('/dev/shm')) {
    t.skip('no /dev/shm');
    return;
  }
  return eachImpl(t, (impl) =>
    withDir((dir) => {
      const src = pattern(300_000, 3);
      fs.writeFileSync(path.join(dir, 'a'), src);
      const target = path.join('/dev/shm', `thinsim-hot-${process.pid}-${impl.native}`);
      const fin = fs.openSync(path.join(dir, 'a'), 'r');
      const fout = fs.openSync(target, 'w+');
      try {
        assert.equal(impl.copyRange(fin, 0, fout, 0, 300_000), 300_000);
        assert.ok(fs.readFileSync(target).equals(src));
      } finally {
        fs.closeSync(fin);
        fs.closeSync(fout);
        fs.rmSync(target, { force: true });
      }
    })());
});

test('copyRangeAsync: same bytes as copyRange, concurrent copies, rejections', (t) =>
  eachImpl(t, (impl) =>
    withDir(async (dir) => {
      const src = pattern(8 * 65536, 9);
      fs.writeFileSync(path.join(dir, 'a'), src);
      const fin = fs.openSync(path.join(dir, 'a'), 'r');
      const fout = fs.openSync(path.join(dir, 'b'), 'w+');
      try {
        const p = impl.copyRangeAsync(fin, 0, fout, 0, 10);
        assert.ok(p instanceof Promise);
        assert.equal(await p, 10);
        // Eight chunks in reverse order at once: each lands where it belongs.
        const counts = await Promise.all(
          Array.from({ length: 8 }, (_, k) => impl.copyRangeAsync(fin, (7 - k) * 65536, fout, k * 65536, 65536)),
        );
        assert.deepEqual(counts, Array(8).fill(65536));
        assert.equal(await impl.copyRangeAsync(fin, src.length - 5, fout, 0, 100), 5);
        const out = fs.readFileSync(path.join(dir, 'b'));
        for (let k = 0; k < 8; k++) {
          const want = src.subarray((7 - k) * 65536, (8 - k) * 65536);
          const got = out.subarray(k * 65536, (k + 1) * 65536);
          if (k === 0) {
            assert.ok(got.subarray(0, 5).equals(src.subarray(src.length - 5)));
            assert.ok(got.subarray(5).equals(want.subarray(5)));
          } else {
            assert.ok(got.equals(want), `chunk ${k}`);
          }
        }
        // Argument errors are synchronous; I/O errors reject with the errno in details.
        assert.throws(() => impl.copyRangeAsync(fin, -1, fout, 0, 1), (e) => isThinError(e, 'E_INVALID'));
        await assert.rejects(impl.copyRangeAsync(1_000_000, 0, fout, 0, 10), (e) => isThinError(e, 'E_IO') && e.details.errno === 'EBADF');
      } finally {
        fs.closeSync(fin);
        fs.closeSync(fout);
      }
    })()));

test('syscall errors are ThinError E_IO carrying the errno name and the syscall', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      fs.writeFileSync(path.join(dir, 'a'), pattern(100));
      const ro = fs.openSync(path.join(dir, 'a'), 'r');
      const closed = 1_000_000; // above any fd limit here, so never open
      try {
        const isEbadf = (e: unknown): boolean =>
          isThinError(e, 'E_IO') && e.details.errno === 'EBADF' && typeof e.details.syscall === 'string' && e.message.length > 0;
        assert.throws(() => impl.copyRange(closed, 0, ro, 0, 10), isEbadf);
        assert.throws(() => impl.copyRange(ro, 0, ro, 50, 10), isEbadf, 'destination opened read-only');
        assert.throws(() => impl.zeroRange(closed, 0, 10, false), isEbadf);
        assert.throws(() => impl.zeroRange(ro, 0, 10, true), isEbadf);
      } finally {
        fs.closeSync(ro);
      }
    })()));

test('zeroRange punch=true: a hole (fewer st_blocks), zeros, size unchanged', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      const file = path.join(dir, 'z');
      fs.writeFileSync(file, Buffer.alloc(1 << 20, 0xee));
      const fd = fs.openSync(file, 'r+');
      try {
        fs.fsyncSync(fd);
        const before = fs.fstatSync(fd).blocks;
        const m = impl.zeroRange(fd, 65536, 262144, true);
        fs.fsyncSync(fd);
        const after = fs.fstatSync(fd).blocks;
        if (impl.native) {
          // ext4/xfs/btrfs/tmpfs all punch; a filesystem that cannot would report 3.
          assert.ok(m === ZERO_METHOD.PUNCHED || m === ZERO_METHOD.WROTE_ZEROS);
          if (m === ZERO_METHOD.PUNCHED) assert.ok(after <= before - 262144 / 512, `blocks ${before} -> ${after}`);
        } else {
          assert.equal(m, ZERO_METHOD.WROTE_ZEROS);
        }
        assert.equal(fs.fstatSync(fd).size, 1 << 20);
        // Past EOF: the size still does not change.
        impl.zeroRange(fd, (1 << 20) - 10, 4096, true);
        assert.equal(fs.fstatSync(fd).size, 1 << 20);
      } finally {
        fs.closeSync(fd);
      }
      const out = fs.readFileSync(file);
      for (let i = 0; i < out.length; i += 512) {
        const zero = (i >= 65536 && i < 65536 + 262144) || i >= (1 << 20) - 512;
        const chunk = out.subarray(i, i + 512);
        if (i === (1 << 20) - 512) {
          assert.ok(chunk.subarray(0, 502).every((b) => b === 0xee) && chunk.subarray(502).every((b) => b === 0));
        } else {
          assert.ok(chunk.every((b) => b === (zero ? 0 : 0xee)), `sector at ${i}`);
        }
      }
    })()));

test('zeroRange punch=false: zeros in place, grows the file like a write', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      const file = path.join(dir, 'z');
      fs.writeFileSync(file, Buffer.alloc(100_000, 0xee));
      const fd = fs.openSync(file, 'r+');
      try {
        const m = impl.zeroRange(fd, 1000, 5000, false);
        assert.ok(impl.native ? m === ZERO_METHOD.ZERO_RANGE || m === ZERO_METHOD.WROTE_ZEROS : m === ZERO_METHOD.WROTE_ZEROS);
        impl.zeroRange(fd, 99_000, 11_000, false);
        assert.equal(fs.fstatSync(fd).size, 110_000);
        assert.equal(impl.zeroRange(fd, 0, 0, false), ZERO_METHOD.NOTHING);
      } finally {
        fs.closeSync(fd);
      }
      const out = fs.readFileSync(file);
      assert.ok(out.subarray(0, 1000).every((b) => b === 0xee));
      assert.ok(out.subarray(1000, 6000).every((b) => b === 0));
      assert.ok(out.subarray(6000, 99_000).every((b) => b === 0xee));
      assert.ok(out.subarray(99_000).every((b) => b === 0));
    })()));

test('zeroRange on tmpfs (ZERO_RANGE unsupported there) falls back to writing zeros', (t) => {
  if (!fs.existsSync('/dev/shm')) {
    t.skip('no /dev/shm');
    return;
  }
  return eachImpl(t, (impl) => {
    const file = path.join('/dev/shm', `thinsim-hot-zero-${process.pid}-${impl.native}`);
    fs.writeFileSync(file, Buffer.alloc(50_000, 0xee));
    const fd = fs.openSync(file, 'r+');
    try {
      const m = impl.zeroRange(fd, 10, 20_000, false);
      assert.ok([ZERO_METHOD.ZERO_RANGE, ZERO_METHOD.WROTE_ZEROS].includes(m as 2 | 3));
      const out = fs.readFileSync(file);
      assert.ok(out.subarray(10, 20_010).every((b) => b === 0) && out[9] === 0xee && out[20_010] === 0xee);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    }
  });
});

test('isZero over 64 KiB with one byte set anywhere', (t) =>
  eachImpl(t, (impl) => {
    const b = Buffer.alloc(65536 + 3).subarray(3);
    assert.equal(impl.isZero(b), true);
    for (const i of [0, 1, 7, 8, 63, 64, 65, 4095, 32768, 65535]) {
      b[i] = 1;
      assert.equal(impl.isZero(b), false, `byte ${i}`);
      b[i] = 0;
    }
    assert.equal(impl.isZero(Buffer.alloc(0)), true);
  }));

test('alignedBuffer: zeroed Buffer of the asked size; native one works for O_DIRECT', (t) =>
  eachImpl(t, (impl) =>
    withDir((dir) => {
      const b = impl.alignedBuffer(8192);
      assert.ok(Buffer.isBuffer(b));
      assert.equal(b.length, 8192);
      assert.ok(b.every((x) => x === 0));
      assert.equal(impl.alignedBuffer(0).length, 0);
      assert.equal(impl.alignedBuffer(100, 512).length, 100);
      if (!impl.native) return;
      // JS cannot read an address, but the kernel checks it: O_DIRECT reads need a
      // memory address aligned to the logical block size (EINVAL otherwise).
      const file = path.join(dir, 'direct');
      fs.writeFileSync(file, pattern(65536));
      let fd: number;
      try {
        fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
      } catch {
        t.diagnostic('filesystem refuses O_DIRECT; alignment not checked');
        return;
      }
      try {
        for (let k = 0; k < 32; k++) {
          const a = impl.alignedBuffer(4096 * 2);
          assert.equal(fs.readSync(fd, a, 0, 4096, 4096), 4096);
          assert.ok(a.subarray(0, 4096).equals(pattern(65536).subarray(4096, 8192)));
        }
        const shifted = impl.alignedBuffer(4096 * 3).subarray(1);
        assert.throws(() => fs.readSync(fd, shifted, 0, 4096, 0), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
      } finally {
        fs.closeSync(fd);
      }
    })()));

test('alignedBuffer memory is released by GC (many large buffers, no crash)', (t) => {
  if (nativeImpl === undefined) {
    t.skip('native only');
    return;
  }
  let sum = 0;
  for (let k = 0; k < 256; k++) {
    const b = nativeImpl.alignedBuffer(4 << 20);
    b[k] = 1;
    sum += b.length;
  }
  assert.equal(sum, 256 * (4 << 20));
});

/**
 * `thinsim serve` with real, unmodified NBD clients over a unix socket:
 * - qemu-img convert -n of a random, partly sparse raw image into an export; qemu-img
 *   compare against the source; after the server stops, `thinsim thin export` of the device
 *   is byte-identical to the source (cmp);
 * - nbdcopy into an export and back out again, checked with cmp;
 * - nbdinfo --map after a random mix of unaligned writes, trims and zeroing, against the
 *   mappings a model of those requests predicts, and against `thinsim dump`;
 * - qemu-img map --output=json of a sparse `thinsim thin import` keeps the holes.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { thinsimOk } from '../helpers/cli';
import { call, connect, dataRuns, dumpRuns, have, makePool, MiB, randomBytes, runOk, serve } from './helpers';

const CHUNK = 64 * 1024;

/** A raw image: random data in some regions (some unaligned), zeros elsewhere, sparse on disk. */
function makeImage(file: string, size: number, seed: number, regions: Array<[number, number]>): Buffer {
  const img = Buffer.alloc(size);
  regions.forEach(([off, len], i) => randomBytes(len, seed + i).copy(img, off));
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    for (const [off, len] of regions) fs.writeSync(fd, img, off, len, off);
  } finally {
    fs.closeSync(fd);
  }
  return img;
}

test('qemu-img convert -n into an export, compare, and thin export after stopping', async (t) => {
  if (!have('qemu-img')) return t.skip('qemu-img not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '64M' });
  const src = d.file('src.raw');
  makeImage(src, 64 * MiB, 11, [[0, 8 * MiB], [20 * MiB + 1234, 10 * MiB], [40 * MiB + 512, 4096], [63 * MiB, MiB]]);
  const s = await serve(pool, d.path);
  try {
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri(1)]);
    const cmp = await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri(1)]);
    assert.match(cmp, /Images are identical/);
  } finally {
    const r = await s.stop();
    assert.equal(r.code, 0, `serve exits 0 on SIGTERM: ${r.stderr}`);
  }
  const out = d.file('out.raw');
  thinsimOk(['thin', 'export', pool, '1', out]);
  await runOk('cmp', [src, out]);
  thinsimOk(['check', pool]);
});

test('nbdcopy into an export and back out', async (t) => {
  if (!have('nbdcopy')) return t.skip('nbdcopy not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 2: '48M' });
  const src = d.file('src.raw');
  makeImage(src, 48 * MiB, 21, [[MiB, 5 * MiB], [17 * MiB + 3, 3 * MiB + 7], [47 * MiB, MiB]]);
  const s = await serve(pool, d.path);
  try {
    await runOk('nbdcopy', [src, s.uri(2)]);
    const back = d.file('back.raw');
    await runOk('nbdcopy', [s.uri(2), back]);
    await runOk('cmp', [src, back]);
    // Several connections at once (nbdcopy uses multi-conn when the server allows it).
    const back4 = d.file('back4.raw');
    await runOk('nbdcopy', ['--connections=4', s.uri(2), back4]);
    await runOk('cmp', [src, back4]);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  const out = d.file('out.raw');
  thinsimOk(['thin', 'export', pool, '2', out]);
  await runOk('cmp', [src, out]);
});

/**
 * The model: which chunks are mapped after a sequence of requests, by dm-thin's rules
 * (a write maps every chunk it touches; a trim or hole-punching zero unmaps the chunks it
 * covers whole and leaves partly covered ones as they were), and the bytes they hold.
 */
class Model {
  readonly mapped = new Set<number>();
  readonly bytes: Buffer;
  constructor(readonly size: number) {
    this.bytes = Buffer.alloc(size);
  }
  write(off: number, data: Buffer): void {
    data.copy(this.bytes, off);
    for (let c = Math.floor(off / CHUNK); c * CHUNK < off + data.length; c++) this.mapped.add(c);
  }
  punch(off: number, len: number): void {
    this.bytes.fill(0, off, off + len);
    for (let c = Math.ceil(off / CHUNK); (c + 1) * CHUNK <= off + len; c++) this.mapped.delete(c);
  }
  runs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const c of [...this.mapped].sort((a, b) => a - b)) {
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === c * CHUNK) last[1] += CHUNK;
      else out.push([c * CHUNK, CHUNK]);
    }
    return out;
  }
}

test('nbdinfo --map matches the mappings a model of the requests predicts (and thinsim dump)', async (t) => {
  if (!have('nbdinfo')) return t.skip('nbdinfo not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const size = 32 * MiB;
  const pool = makePool(d.file('pool'), { 3: '32M' });
  const s = await serve(pool, d.path);
  const model = new Model(size);
  const rand = new Rand(1234);
  try {
    const c = await connect(s.socket, '3');
    for (let i = 0; i < 120; i++) {
      const off = rand.int(size - 1);
      const len = 1 + rand.int(Math.min(size - off, 3 * CHUNK) - 1);
      const op = rand.int(10);
      if (op < 6) {
        const data = randomBytes(len, i);
        assert.equal((await call(c, 1, off, len, { payload: data })).error, 0);
        model.write(off, data);
      } else if (op < 8) {
        assert.equal((await call(c, 4, off, len)).error, 0, 'TRIM');
        model.punch(off, len);
      } else {
        assert.equal((await call(c, 6, off, len)).error, 0, 'WRITE_ZEROES');
        model.punch(off, len);
      }
    }
    assert.equal((await call(c, 3, 0, 0)).error, 0, 'FLUSH');
    c.w.end();
    const map = JSON.parse(await runOk('nbdinfo', ['--map', '--json', s.uri(3)]));
    assert.deepEqual(dataRuns(map), model.runs(), 'nbdinfo --map data extents = the model');
    for (const e of map) assert.ok(e.type === 0 || e.type === 3, `extent types are data (0) or hole,zero (3): ${JSON.stringify(e)}`);
    assert.deepEqual(dumpRuns(pool, 3, CHUNK), model.runs(), 'thinsim dump = the model');
    const img = d.file('img.raw');
    await runOk('nbdcopy', [s.uri(3), img]);
    assert.ok(fs.readFileSync(img).equals(model.bytes), 'the bytes read back are the model');
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  thinsimOk(['check', pool]);
});

test('qemu-img map keeps the holes of a sparse thin import', async (t) => {
  if (!have('qemu-img')) return t.skip('qemu-img not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 4: '16M' });
  const src = d.file('sparse.raw');
  const img = makeImage(src, 16 * MiB, 31, [[0, CHUNK], [3 * CHUNK + 100, 10], [MiB, 2 * CHUNK], [10 * MiB - 1, 2], [16 * MiB - CHUNK, CHUNK]]);
  thinsimOk(['thin', 'import', pool, '4', src]);
  // Expected: every chunk of the image that is not all zeros, and nothing else.
  const expected: Array<[number, number]> = [];
  for (let off = 0; off < img.length; off += CHUNK) {
    if (img.subarray(off, off + CHUNK).some((b) => b !== 0)) {
      const last = expected[expected.length - 1];
      if (last && last[0] + last[1] === off) last[1] += CHUNK;
      else expected.push([off, CHUNK]);
    }
  }
  const s = await serve(pool, d.path, ['--read-only']);
  try {
    const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', s.uri(4)])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
    const data = dataRuns(map.map((e) => ({ offset: e.start, length: e.length, type: e.data ? 0 : 3 })));
    assert.deepEqual(data, expected, 'qemu-img map: data exactly where the image has data');
    for (const e of map) if (!e.data) assert.equal(e.zero, true, 'holes read as zeros');
    assert.deepEqual(dumpRuns(pool, 4, CHUNK), expected, 'thinsim dump agrees');
    const cmp = await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri(4)]);
    assert.match(cmp, /identical/);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('TCP on loopback: --listen 127.0.0.1:0 prints an nbd:// URI that nbdinfo and nbdcopy use', async (t) => {
  if (!have('nbdinfo') || !have('nbdcopy')) return t.skip('nbdinfo/nbdcopy not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 5: '8M', 6: '4M' });
  const s = await serve(pool, d.path, ['--listen', '127.0.0.1:0', '--export', 'disk=5', '--export', 'other=6']);
  try {
    assert.match(s.printed, /^nbd:\/\/127\.0\.0\.1:\d+\/disk$/, s.printed);
    assert.doesNotMatch(s.stderr(), /warning/, 'no warning on loopback');
    assert.equal((await runOk('nbdinfo', ['--size', s.printed])).trim(), String(8 * MiB));
    const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', s.printed]));
    assert.deepEqual(list.exports.map((e: { 'export-name': string }) => e['export-name']), ['disk', 'other']);
    const src = d.file('src.raw');
    makeImage(src, 4 * MiB, 41, [[12345, MiB]]);
    await runOk('nbdcopy', [src, s.uri('other')]);
    const back = d.file('back.raw');
    await runOk('nbdcopy', [s.uri('other'), back]);
    await runOk('cmp', [src, back]);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

/**
 * io devices against a plain byte-array model: `writev` (the block manager's gathered
 * commit writes) lands every buffer back to back, also with more buffers than one
 * writev(2) call takes (IOV_MAX is 1024 on Linux; libuv splits such a call, and
 * FileDevice goes on after any short write) and with empty ones among them; a
 * read-only device refuses it; and a MemoryDevice crash image keeps or drops each
 * buffer of an unsynced writev as a whole, never a torn piece of one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { isThinError } from '../../src/errors';
import { DataDevice } from '../../src/io/data-device';
import { FileDevice } from '../../src/io/file-device';
import { MemoryDevice } from '../../src/io/memory-device';
import type { BlockDevice } from '../../src/io/block-device';
import { tmpdir } from '../helpers/oracle';
import { Rand } from '../../support/random';

const SIZE = 1 << 20;

/** Random buffers (some empty) totalling at most `max` bytes. */
function buffers(r: Rand, count: number, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const len = r.chance(0.1) ? 0 : Math.min(r.int(300), max - total);
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) b[j] = r.int(256);
    out.push(b);
    total += len;
  }
  return out;
}

function exercise(dev: BlockDevice, seed: number): void {
  const r = new Rand(seed);
  const model = new Uint8Array(SIZE);
  dev.write(model, 0);
  for (let round = 0; round < 20; round++) {
    const count = round % 5 === 0 ? 2500 : 1 + r.int(40); // 2500 > IOV_MAX
    const bufs = buffers(r, count, SIZE / 2);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const at = r.int(SIZE - total);
    dev.writev(bufs, at);
    let o = at;
    for (const b of bufs) { model.set(b, o); o += b.length; }
    const back = new Uint8Array(SIZE);
    dev.read(back, 0);
    assert.ok(Buffer.from(back).equals(Buffer.from(model)), `seed ${seed} round ${round}: ${count} buffers at ${at}`);
  }
}

test('FileDevice.writev writes every buffer back to back, beyond IOV_MAX buffers too', () => {
  const dir = tmpdir('thinsim-io-');
  try {
    const file = dir.sparse('dev', SIZE);
    const dev = new FileDevice(file);
    try {
      exercise(dev, 1);
    } finally {
      dev.close();
    }
    const ro = new FileDevice(file, { readOnly: true });
    try {
      assert.throws(() => ro.writev([new Uint8Array(4)], 0), (e: unknown) => isThinError(e, 'E_READ_ONLY'));
    } finally {
      ro.close();
    }
    assert.equal(fs.statSync(file).size, SIZE);
  } finally {
    dir.cleanup();
  }
});

test('MemoryDevice.writev matches the model, and a crash keeps or drops each buffer whole', () => {
  exercise(new MemoryDevice(SIZE), 2);
  const dev = new MemoryDevice(SIZE);
  const r = new Rand(3);
  const bufs = Array.from({ length: 64 }, () => new Uint8Array(4096).fill(1 + r.int(255)));
  dev.writev(bufs, 4096);
  let kept = 0;
  for (let seed = 1; seed <= 8; seed++) {
    const img = dev.crashImage(seed);
    bufs.forEach((b, i) => {
      const got = img.subarray(4096 * (i + 1), 4096 * (i + 2));
      const whole = Buffer.from(got).equals(Buffer.from(b));
      assert.ok(whole || got.every((x) => x === 0), `seed ${seed}: buffer ${i} is torn`);
      if (whole) kept++;
    });
  }
  assert.ok(kept > 0 && kept < 8 * 64, `an unsynced writev is neither always kept nor always lost (${kept} of ${8 * 64})`);
  dev.sync();
  const img = dev.crashImage(9);
  bufs.forEach((b, i) => assert.ok(Buffer.from(img.subarray(4096 * (i + 1), 4096 * (i + 2))).equals(Buffer.from(b)), `after sync, buffer ${i} survives`));
});

test('DataDevice inline I/O: writeNow writes back to back, readNow reads what the file holds (zeros past its end), and off means untouched', async () => {
  const dir = tmpdir('thinsim-io-');
  try {
    const file = dir.sparse('data', 1 << 20);
    const model = Buffer.alloc(1 << 20);
    const r = new Rand(11);
    const dev = new DataDevice(file);
    try {
      for (let i = 0; i < 50; i++) {
        const bufs = Array.from({ length: 1 + r.int(4) }, () => Buffer.from(Array.from({ length: r.int(9000) }, () => r.int(256))));
        const total = bufs.reduce((n, b) => n + b.length, 0);
        const at = r.int(model.length - total);
        // After a slow write (a busy machine) inline writes back off for a while: wait it out.
        while (!dev.writeNow(bufs, at)) {
          assert.equal(dev.canWriteNow(), false, 'writeNow refuses only while backing off');
          await new Promise((r) => setTimeout(r, 50));
        }
        Buffer.concat(bufs).copy(model, at);
      }
      assert.ok(fs.readFileSync(file).equals(model), 'the file holds the writes, in order');
      for (let i = 0; i < 50; i++) {
        const len = 1 + r.int(70_000);
        const at = r.int(model.length + 4096);
        const buf = Buffer.alloc(len, 0xcd);
        const want = Buffer.alloc(len);
        model.copy(want, 0, Math.min(at, model.length), Math.min(at + len, model.length));
        // -1 ("not without waiting") is always allowed; the twin never reads inline.
        if (dev.readNow(buf, at)) assert.ok(buf.equals(want), `inline read at ${at}+${len}`);
      }
    } finally {
      dev.close();
    }
    const off = new DataDevice(file, { inline: false });
    try {
      assert.equal(off.writeNow([Buffer.alloc(16, 1)], 0), false);
      assert.equal(off.readNow(Buffer.alloc(16), 0), false);
    } finally {
      off.close();
    }
    assert.ok(fs.readFileSync(file).equals(model), 'a refused write wrote nothing');
  } finally {
    dir.cleanup();
  }
});

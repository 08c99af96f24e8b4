/**
 * The writers' byte mode (what the CLI uses) prints exactly what string mode prints: random
 * dumps (runs and single blocks, numbers up to 2^53 - 1, a non-ASCII uuid), every writer,
 * flush thresholds from tiny to default; each chunk is copied as it arrives (the buffer is
 * reused), and no chunk is empty.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HumanReadableWriter, JsonWriter, XmlWriter } from '../../src/thin/xml/writer';
import type { MetadataSink } from '../../src/thin/xml/types';
import { Rand } from '../../support/random';

function feed(sink: MetadataSink, rng: Rand): void {
  sink.superblock({ uuid: 'pool-ü-"<&>"', time: 7, transaction: 2 ** 53 - 1, flags: 0, version: 2, dataBlockSize: 128, nrDataBlocks: 2 ** 53 - 1 });
  for (let dev = 0; dev < 3; dev++) {
    sink.device({ devId: dev * 1000, mappedBlocks: rng.int(1e6), transaction: dev, creationTime: dev, snapTime: dev + 1 });
    let o = rng.chance(0.5) ? 0 : 2 ** 52;
    for (let i = 0; i < 300; i++) {
      const len = rng.chance(0.5) ? 1 : 1 + rng.int(20);
      const big = rng.chance(0.1);
      sink.mapping(o, big ? 2 ** 53 - 1 - len - rng.int(1000) : rng.int(100), len, rng.chance(0.1) ? 2 ** 24 - 1 : rng.int(3));
      o += len + (rng.chance(0.3) ? 0 : 1 + rng.int(5));
    }
    sink.endDevice();
  }
  sink.endSuperblock();
}

test('byte mode = string mode, for every writer and flush size', () => {
  const writers = [XmlWriter, JsonWriter, HumanReadableWriter];
  for (let seed = 1; seed <= 20; seed++) {
    for (const W of writers) {
      for (const flushBytes of [1, 100, 4096, 64 * 1024]) {
        const strings: string[] = [];
        feed(new W((c) => strings.push(c), { flushBytes }), new Rand(seed));
        const chunks: Buffer[] = [];
        feed(new W(() => assert.fail('string output used in byte mode'), {
          flushBytes,
          bytes: (b) => { assert.ok(b.length > 0, 'no empty chunk'); chunks.push(Buffer.from(b)); },
        }), new Rand(seed));
        assert.equal(Buffer.concat(chunks).toString('utf8'), strings.join(''), `${W.name}, seed ${seed}, flushBytes ${flushBytes}`);
      }
    }
  }
});

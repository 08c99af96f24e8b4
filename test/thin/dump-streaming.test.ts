/**
 * `dump` streams: dumping a device of N scattered mappings (no two merge into a run, so
 * the XML has N lines) must not hold the mappings in memory. The heap is sampled while
 * the XML and JSON writers emit; holding N mappings as JS values would need well over
 * 100 MiB (N = 2M), while a streaming dump needs the block cache (outside the heap) and a
 * leaf's worth of values. Every line is counted, so the dump cannot stop early either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { dumpMetadata } from '../../src/thin/dump';
import { JsonWriter, XmlWriter, type OutputFn } from '../../src/thin/xml/writer';
import { tmpdir } from '../helpers/oracle';

const N = 2_000_000;
const STRIDE = 7919; // prime, coprime with N: v -> v * STRIDE mod N is a permutation without runs
const MiB = 1024 * 1024;

test(`dump of ${N} unmergeable mappings streams (bounded heap, every mapping emitted)`, () => {
  const dir = tmpdir('thinsim-dump-stream-');
  try {
    const file = dir.sparse('metadata', 256 * MiB);
    const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: 128, nrDataBlocks: N });
    md.createThin(7);
    for (let v = 0; v < N; v++) md.allocateDataBlock();
    for (let v = 0; v < N; v++) md.insertMapping(7, v, (v * STRIDE) % N);
    md.commit();
    md.close();

    for (const format of ['xml', 'json'] as const) {
      const ro = ThinMetadata.open(new FileDevice(file, { readOnly: true }));
      const base = process.memoryUsage().heapUsed;
      let peak = base;
      let chars = 0;
      let lines = 0;
      let next = 0;
      const out: OutputFn = (chunk) => {
        chars += chunk.length;
        for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) lines++;
        if (lines >= next) {
          peak = Math.max(peak, process.memoryUsage().heapUsed);
          next = lines + 50_000;
        }
      };
      const sink = format === 'json' ? new JsonWriter(out) : new XmlWriter(out);
      dumpMetadata(ro, sink);
      ro.close();
      // XML: superblock, device, N mappings, two closing tags; JSON spreads each over lines.
      if (format === 'xml') assert.equal(lines, N + 4, `${format}: ${lines} lines`);
      else assert.ok(lines >= N, `${format}: ${lines} lines for ${N} mappings`);
      assert.ok(chars > N * 30, `${format}: only ${chars} characters`);
      const grew = (peak - base) / MiB;
      assert.ok(grew < 48, `${format}: heap grew by ${grew.toFixed(1)} MiB while dumping ${N} mappings`);
    }
  } finally {
    dir.cleanup();
  }
});

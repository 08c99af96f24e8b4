/**
 * Data reference counts after a restore are exact (restore shares no metadata nodes
 * between devices, so a data block's count is the number of mappings to it, over all
 * devices): compared block by block with a model counted from the XML itself, and the
 * result must pass both thin_checks, which recount every data block from the mapping
 * trees and reject any difference from the space map.
 *
 * The pool is built to reach each way RefCounts stores a count: 0, 1 and 2 in the
 * bitmap; 3..254 in the pages of exact counts (several pages, and pages with none);
 * 255 and more (a block mapped by 300 devices); a block mapped by exactly four
 * devices at a page boundary; and several bitmaps (16,320 blocks each). It is restored
 * in rounds of 16 blocks, so the counts' overflow tree is written across rounds too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { restoreFile } from '../../src/thin/restore';
import { Rand } from '../../support/random';
import { ok, skipPart, tmpdir, tools09, tools1x, skipReason } from '../helpers/oracle';

const MiB = 1024 * 1024;
const NR_DATA = 60_000; // 4 bitmaps, 4 pages of exact counts
const PAGE = 1 << 14;
const WIDE_BLOCK = 40_001; // mapped by 300 one-mapping devices (and maybe others)
const FOUR_BLOCK = PAGE - 1; // mapped by exactly four devices, nothing else

/** The XML of the pool above, and the model: every data block's number of mappings. */
function pool(rng: Rand): { xml: string; model: Uint32Array } {
  const model = new Uint32Array(NR_DATA);
  const lines = [`<superblock uuid="" time="5" transaction="3" flags="0" version="2" data_block_size="128" nr_data_blocks="${NR_DATA}">`];
  const device = (id: number, maps: Array<[number, number, number]>): void => {
    lines.push(`  <device dev_id="${id}" mapped_blocks="${maps.reduce((n, m) => n + m[2], 0)}" transaction="0" creation_time="0" snap_time="0">`);
    for (const [o, d, len] of maps) {
      for (let i = 0; i < len; i++) model[d + i]++;
      lines.push(len === 1
        ? `    <single_mapping origin_block="${o}" data_block="${d}" time="${rng.int(5)}"/>`
        : `    <range_mapping origin_begin="${o}" data_begin="${d}" length="${len}" time="${rng.int(5)}"/>`);
    }
    lines.push('  </device>');
  };
  // Six devices sharing a hot region (blocks 0..19,999: counts up to 6) and mapping the
  // rest sparsely (counts 0..2 mostly); page 2 (32,768..49,151) gets no hot sharing.
  for (let dev = 0; dev < 6; dev++) {
    const maps: Array<[number, number, number]> = [];
    let o = 0;
    for (let k = 0; k < 2_500; k++) {
      const len = 1 + rng.int(8);
      const hot = rng.chance(0.7);
      let d = hot ? rng.int(20_000 - len) : 20_000 + rng.int(NR_DATA - 20_000 - len);
      if (d <= FOUR_BLOCK && d + len > FOUR_BLOCK) d = FOUR_BLOCK + 1; // FOUR_BLOCK is only the four below
      if (d <= WIDE_BLOCK && d + len > WIDE_BLOCK) d = WIDE_BLOCK + 1;
      maps.push([o, d, len]);
      o += len + 1 + rng.int(3);
    }
    if (dev < 4) maps.push([o + 10, FOUR_BLOCK, 1]);
    device(dev, maps);
  }
  for (let dev = 100; dev < 400; dev++) device(dev, [[rng.int(1000), WIDE_BLOCK, 1]]);
  lines.push('</superblock>');
  return { xml: lines.join('\n') + '\n', model };
}

test('after a restore every data block counts exactly its mappings (model), and both thin_checks agree', async (t) => {
  const dir = tmpdir('thinsim-refcounts-');
  t.after(() => dir.cleanup());
  const { xml, model } = pool(new Rand(19));
  const kinds = new Set<string>();
  for (const c of model) kinds.add(c < 3 ? String(c) : c < 255 ? '3..254' : '255+');
  assert.deepEqual([...kinds].sort(), ['0', '1', '2', '255+', '3..254'], 'the pool reaches every kind of count');
  assert.equal(model[FOUR_BLOCK], 4);
  assert.ok(model[WIDE_BLOCK] >= 300);

  const xmlFile = dir.file('in.xml');
  fs.writeFileSync(xmlFile, xml);
  const meta = dir.sparse('meta', 64 * MiB);
  await restoreFile(meta, xmlFile, { metadataSize: 64 * MiB, roundBlocks: 16 });

  const md = ThinMetadata.open(new FileDevice(meta, { readOnly: true }));
  try {
    let allocated = 0;
    for (let b = 0; b < NR_DATA; b++) {
      const got = md.dataRefCount(b);
      if (got !== model[b]) assert.fail(`data block ${b}: count ${got}, but ${model[b]} mappings reference it`);
      if (model[b] > 0) allocated++;
    }
    assert.equal(md.nrFreeDataBlocks, NR_DATA - allocated);
  } finally {
    md.close();
  }

  const t1 = tools1x();
  if (t1) ok(t1.check(meta), 'thin_check 1.x');
  else skipPart(t, 'thin_check 1.x', skipReason.tools1x);
  const t09 = tools09();
  if (t09) ok(t09.check(meta), 'thin_check 0.9.0');
  else skipPart(t, 'thin_check 0.9.0', skipReason.tools09);
});

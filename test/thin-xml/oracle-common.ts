/**
 * Shared by oracle-09.test.ts and oracle-1x.test.ts (two files so node --test runs them in
 * parallel). Random pool models checked against the real thin-provisioning-tools:
 *  - our XML, restored by thin_restore and dumped by thin_dump, comes back byte for byte
 *    (0.9.0; 1.x restore then 0.9.0 dump, superblock line aside);
 *  - our reader turns the tools' dumps (0.9.0 flat, 1.x with <def>/<ref>) back into the model;
 *  - human_readable, thin_ls (every field, with and without headers) and thin_delta (plain and
 *    --verbose, random device pairs) print exactly what the tools print.
 * Set THINSIM_SEEDS=n to run more models, THINSIM_SEED=s to run one (seeds from 1000).
 */

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { ok, type TmpDir, type Tools } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { exclusiveCounts, replay, type DumpModel } from '../helpers/thin-model';
import { formatDelta } from '../../src/thin/report/delta-format';
import { formatLs, LS_FIELDS, type LsDialect, type LsField } from '../../src/thin/report/ls-format';
import type { MetadataSink } from '../../src/thin/xml/types';
import type { OutputFn } from '../../src/thin/xml/writer';

export function render(make: (out: OutputFn) => MetadataSink, model: DumpModel, seed: number): string {
  let s = '';
  replay(model, make((c) => (s += c)), new Rand(seed ^ 0x5bd1e995));
  return s;
}

/** Restore the model's XML with `tools` into a fresh 16 MiB file. */
export function restore(tools: Tools, dir: TmpDir, xml: string, name: string): string {
  const xmlFile = dir.file(`${name}.xml`);
  fs.writeFileSync(xmlFile, xml);
  const meta = dir.sparse(`${name}.bin`);
  ok(tools.restore(xmlFile, meta), `${tools.flavour} thin_restore`);
  return meta;
}

export function lsRows(model: DumpModel) {
  const excl = exclusiveCounts(model);
  return model.devices.map((d) => ({ ...d.info, exclusiveBlocks: excl.get(d.info.devId)! }));
}

export function checkLs(tools: Tools, meta: string, model: DumpModel, dialect: LsDialect, quick = false): void {
  const rows = lsRows(model);
  const bs = model.sb.dataBlockSize;
  let cases: { args: string[]; fields?: LsField[]; headers: boolean }[] = [
    { args: [], headers: true },
    { args: ['--no-headers'], headers: false },
    { args: ['-o', LS_FIELDS.join(',')], fields: [...LS_FIELDS], headers: true },
    { args: ['--no-headers', '-o', LS_FIELDS.join(',')], fields: [...LS_FIELDS], headers: false },
    { args: ['-o', 'SHARED,DEV,EXCLUSIVE_BLOCKS'], fields: ['SHARED', 'DEV', 'EXCLUSIVE_BLOCKS'], headers: true },
  ];
  // 1.x's thin_ls always takes 0.5 s (its progress thread), so it gets the two widest cases.
  if (quick) cases = [cases[1], cases[2]];
  for (const c of cases) {
    const got = ok(tools.ls(meta, c.args), `${tools.flavour} thin_ls ${c.args.join(' ')}`).stdout;
    const want = formatLs(rows, { fields: c.fields, headers: c.headers, dataBlockSize: bs, dialect });
    assert.equal(want, got, `thin_ls ${c.args.join(' ')} (${tools.flavour})`);
  }
}

export function checkDelta(tools: Tools, meta: string, model: DumpModel, seed: number): void {
  const r = new Rand(seed ^ 0x1234567);
  const devs = model.devices;
  const pairs: [number, number][] = [];
  for (let k = 0; k < 4; k++) pairs.push([r.int(devs.length), r.int(devs.length)]);
  for (const [a, b] of pairs) {
    for (const verbose of [false, true]) {
      const left = devs[a];
      const right = devs[b];
      const args = ['--snap1', String(left.info.devId), '--snap2', String(right.info.devId), ...(verbose ? ['--verbose'] : [])];
      const side = (d: typeof left) => ({
        devId: d.info.devId,
        mappings: d.mappings.map((m) => ({ originBegin: m.origin, dataBegin: m.data, length: 1 })),
      });
      const got = ok(tools.delta(meta, args), `${tools.flavour} thin_delta ${args.join(' ')}`).stdout;
      const want = formatDelta(model.sb, side(left), side(right), { verbose, dialect: tools.flavour });
      assert.equal(want, got, `thin_delta ${args.join(' ')} (${tools.flavour})`);
    }
  }
}


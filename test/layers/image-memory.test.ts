/**
 * Import streams: a generated 1 GiB image (four layers of large files) imports in a child
 * process whose peak RSS (VmHWM) stays under 300 MiB, with every layer's DiffID right.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { writeDockerArchive, type GenEntry } from '../../src/experiments/image-gen';
import { missingMount } from './image-fixtures';

const MiB = 2 ** 20;
const skip = missingMount() ?? (fs.existsSync('/proc/self/status') ? undefined : 'needs /proc/self/status (Linux) to read VmHWM');

describe('image import memory', { skip }, () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-image-mem-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('a 1 GiB image imports with peak RSS < 300 MiB', { timeout: 600_000 }, async (t) => {
    const layers: GenEntry[][] = [];
    for (let l = 0; l < 4; l++) {
      const files: GenEntry[] = [{ path: `data${l}`, type: 'dir' }];
      for (let f = 0; f < 4; f++) files.push({ path: `data${l}/file${f}`, type: 'file', content: { size: 64 * MiB, seed: l * 16 + f + 1 } });
      layers.push(files);
    }
    const gen = await writeDockerArchive(path.join(tmp, 'big.tar'), { repoTag: 'big/image:1', layers });
    assert.equal(gen.tarBytes.reduce((a, b) => a + b, 0) >= 1024 * MiB, true);
    const poolDir = path.join(tmp, 'pool');
    await Pool.create(poolDir, { dataSize: 4096 * MiB, metadataSize: 64 * MiB }).close();
    const out = execFileSync(process.execPath, [path.join(__dirname, 'fixtures/import-child.js'), poolDir, gen.file, String(2048 * MiB)], { maxBuffer: 1 << 20, timeout: 580_000 }).toString();
    const r = JSON.parse(out.trim().split('\n').pop()!);
    assert.deepEqual(r.diffIds, gen.diffIds);
    assert.equal(r.files, 16);
    assert.ok(r.vmHWMBytes < 300 * MiB, `peak RSS ${(r.vmHWMBytes / MiB).toFixed(0)} MiB`);
    t.diagnostic(`1 GiB import: peak RSS ${(r.vmHWMBytes / MiB).toFixed(0)} MiB, ${r.seconds.toFixed(1)} s (${(r.tarBytes / MiB / r.seconds).toFixed(0)} MiB/s)`);
  });
});

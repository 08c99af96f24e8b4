/**
 * Hostile layers through `thinsim image import` onto a real pool (the CLI, a process of its
 * own). On a pool holding one imported image, each hostile image shares that image's base
 * layer (same ChainID) and adds one bad layer: a tar cut at a seeded random offset (two
 * offsets), an entry climbing out with `..`, a PAX header of 4 MiB (the other hostile
 * cases are in apply-hostile.test.ts, through the same apply). Each import exits 2 with the error's code and the layer named, no stack trace;
 * afterwards the pool is as before: `thinsim image ls`, `thinsim layer ls` and `thinsim ls`
 * (mapped, exclusive and shared blocks of every device) print what they printed before,
 * Docker's device records are the same files (its counters move on), nothing is left mounted, `thinsim check` and
 * both thin_checks pass; nothing outside the layer was written. Then a good image still
 * imports on top.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { writeDockerArchive } from '../../src/experiments/image-gen';
import { Pool } from '../../src/pool/pool';
import { Rand } from '../../support/random';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { thinsim, thinsimOk } from '../helpers/cli';
import { EOF_BLOCKS, packTar, rawHeader } from '../fuzz/tar-archives';
import { ours } from './helpers';
import { isRoot, missingMount } from './image-fixtures';

const MiB = 2 ** 20;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** A docker-save archive whose layers are these exact bytes (uncompressed: DiffID = sha256 of them). */
async function rawDockerArchive(file: string, repoTag: string, layers: Buffer[]): Promise<void> {
  const diffIds = layers.map((l) => `sha256:${sha(l)}`);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }));
  const manifest = JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: [repoTag], Layers: diffIds.map((d) => `${d.slice(7)}/layer.tar`) }]);
  const entries = layers.map((l, i) => ({ h: { name: `${diffIds[i].slice(7)}/layer.tar`, mode: 0o644 } as tar.Headers, body: l }));
  fs.writeFileSync(file, await packTar([...entries, { h: { name: `${sha(config)}.json`, mode: 0o644 }, body: config }, { h: { name: 'manifest.json', mode: 0o644 }, body: manifest }]));
}

/** What must not change when an import fails. */
function poolState(pool: string): Record<string, string> {
  const recs = path.join(pool, 'docker', 'devicemapper', 'metadata');
  return {
    images: thinsimOk(['image', 'ls', pool, '--json']),
    layers: thinsimOk(['layer', 'ls', pool, '--json']),
    devices: thinsimOk(['ls', pool, '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS']),
    // Every device's record (Docker's counters, deviceset-metadata and transaction-metadata, move on).
    records: JSON.stringify(fs.readdirSync(recs).filter((f) => !f.endsWith('-metadata')).sort().map((f) => [f, sha(fs.readFileSync(path.join(recs, f)))])),
  };
}

const skip = missingMount() ?? (isRoot ? undefined : 'needs root: layers mount through loop devices');

test('image import of hostile layers: exit 2, the layer rolled back, the pool as before', { skip, timeout: 600_000 }, async (t) => {
  const work = tempDir(t, 'thinsim-import-hostile-');
  const pool = path.join(work, 'pool');
  await Pool.create(pool, { dataSize: 1024 * MiB, metadataSize: 32 * MiB }).close();
  const baseArchive = path.join(work, 'base.tar');
  await writeDockerArchive(baseArchive, { repoTag: 'hostile/base:1', layers: [[{ path: 'etc', type: 'dir' }, { path: 'etc/os-release', type: 'file', content: 'ID=base\n' }]] });
  thinsimOk(['image', 'import', pool, baseArchive]);
  // The base layer's bytes, to share its ChainID in every hostile image.
  const extract = tar.extract();
  const baseLayer = await new Promise<Buffer>((resolve, reject) => {
    extract.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => { if (h.name.endsWith('/layer.tar')) resolve(Buffer.concat(chunks)); next(); });
    });
    extract.on('error', reject);
    extract.end(fs.readFileSync(baseArchive));
  });
  const before = poolState(pool);

  const outsideDir = path.join(work, 'outside');
  fs.mkdirSync(outsideDir);
  const fileBody = 'y'.repeat(300_000);
  const good = await packTar([{ h: { name: 'opt', type: 'directory', mode: 0o755 } }, ...Array.from({ length: 20 }, (_, i) => ({ h: { name: `opt/f${i}`, mode: 0o644 } as tar.Headers, body: fileBody }))]);
  const rand = new Rand(18);
  const cases: Array<[string, Buffer, RegExp]> = [];
  for (let i = 0; i < 2; i++) {
    const cut = 512 + rand.int(good.length - 2048); // inside the members: nothing after it is a whole end block
    cases.push([`truncated at byte ${cut}`, good.subarray(0, cut), /truncated tar.*\[E_PARSE\]/]);
  }
  cases.push(['an entry climbing out', await packTar([{ h: { name: 'opt', type: 'directory', mode: 0o755 } }, { h: { name: 'opt/a', mode: 0o644 }, body: 'a' }, { h: { name: `../../../../../../../..${outsideDir}/escaped`, mode: 0o644 }, body: 'x' }]), /climbs out of the layer root.*\[E_INVALID\]/]);
  cases.push(['a 4 MiB PAX header', Buffer.concat([good.subarray(0, 512), rawHeader({ name: 'P', typeflag: 'x', size: (4 * MiB).toString(8).padStart(11, '0') }), Buffer.alloc(4 * MiB), EOF_BLOCKS]), /reads at most 1048576.*\[E_PARSE\]/]);

  for (const [what, layer, re] of cases) {
    await t.test(what, async () => {
      const archive = path.join(work, 'hostile.tar');
      await rawDockerArchive(archive, 'hostile/image:1', [baseLayer, layer]);
      const r = thinsim(['image', 'import', pool, archive], { timeoutMs: 300_000 });
      assert.equal(r.status, 2, `exit ${r.status}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /layer .*hostile\.tar \(bytes \d+-\d+ of the archive\)|refusing tar entry/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.deepEqual(poolState(pool), before, 'the pool is as it was before the import');
      assert.deepEqual(ours(), [], 'nothing left mounted');
      assert.deepEqual(fs.readdirSync(outsideDir), [], 'nothing written outside the layer');
      thinsimOk(['check', pool]);
      metadataOracles(t, path.join(pool, 'metadata'), `${what}: `);
    });
  }

  await t.test('a good image still imports on top', async () => {
    const archive = path.join(work, 'good.tar');
    await rawDockerArchive(archive, 'hostile/good:1', [baseLayer, good]);
    thinsimOk(['image', 'import', pool, archive]);
    const images = JSON.parse(thinsimOk(['image', 'ls', pool, '--json'])) as Array<{ tags?: string[]; repoTags?: string[] }>;
    assert.equal(images.length, 2, JSON.stringify(images));
    thinsimOk(['check', pool]);
  });
});

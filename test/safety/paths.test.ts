/**
 * Hostile path arguments through the CLI (src/cli/pool-path.ts, src/pool/table.ts): names
 * with `/`, `..` and absolute paths as thin ids, layer keys and names, ChainIDs, image
 * references, container names and tags; `--output` and export files that point into the
 * pool (directly, through `..`, a symbolic link or a hard link); pool members (pool.json,
 * data, metadata, docker/) replaced by symbolic links to files outside; a pool.json whose
 * device path climbs out of the pool. Each case runs in a sandbox whose parent holds
 * decoy files; the parent's tree (every path, type, mode, size, content and link target,
 * the sandbox excluded) is snapshotted before and compared after each case, and the
 * pool's own files are compared where a case aims at them. The CLI runs with the sandbox
 * as its working directory, so relative `..` climbs toward the decoys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir, repoRoot } from '../helpers/oracle';
import { missingMount } from '../layers/image-fixtures';

const CLI = path.join(repoRoot(), 'bin', 'thinsim.js');

interface Run { status: number | null; stdout: string; stderr: string }

function cli(cwd: string, args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** path -> "type mode size sha256|target" for everything under `root` but `exclude`. */
function snapshot(root: string, exclude: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string) => {
    if (p === exclude) return;
    const st = fs.lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.set(p, `link ${fs.readlinkSync(p)}`);
    else if (st.isDirectory()) {
      out.set(p, `dir ${mode}`);
      for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    } else out.set(p, `file ${mode} ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
  };
  walk(root);
  return out;
}

const hashOf = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

interface Case {
  name: string;
  /** Make the hostile state; returns the files of the pool that must not change. */
  setup?: () => string[];
  args: string[];
  /** Exit status expected (1 or 2 for a refusal; 0 where the argument is only a name). */
  status: number;
  /** What stderr must say. */
  says?: RegExp;
  /** Undo the setup (so later cases see a sound pool). */
  undo?: () => void;
  /** Needs layers mounted (mkfs of the base device). */
  layers?: boolean;
}

test('hostile path arguments through the CLI: nothing outside the sandbox changes, nothing lands in the pool', async (t) => {
  const d = tmpdir('thinsim-paths-');
  t.after(() => d.cleanup());
  const parent = d.path;
  const sandbox = path.join(parent, 'sandbox');
  fs.mkdirSync(sandbox);
  // Decoys beside the sandbox: what a climbing path or a planted link would reach.
  fs.writeFileSync(path.join(parent, 'victim.txt'), 'do not touch\n');
  fs.writeFileSync(path.join(parent, 'victim.json'), '{"version":1}\n');
  fs.mkdirSync(path.join(parent, 'victim-dir'));
  fs.writeFileSync(path.join(parent, 'victim-dir', 'keep'), 'keep\n');
  fs.mkdirSync(path.join(parent, 'etc'));
  fs.writeFileSync(path.join(parent, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  const pool = path.join(sandbox, 'pool');
  const rel = 'pool';
  const ok = (args: string[]) => { const r = cli(sandbox, args); assert.equal(r.status, 0, `thinsim ${args.join(' ')}: ${r.stderr}`); return r.stdout; };
  ok(['pool', 'create', rel, '--data-size', '256M', '--metadata-size', '8M']);
  ok(['thin', 'create', rel, '1', '--size', '4M']);
  fs.writeFileSync(path.join(sandbox, 'four-k'), Buffer.alloc(4096, 0x5a));
  ok(['thin', 'write', rel, '1', '-i', 'four-k']);
  const member = (n: string) => path.join(pool, n);
  const swap = (name: string, target: string) => () => {
    fs.renameSync(member(name), member(`${name}.real`));
    fs.symlinkSync(target, member(name));
    return [member(`${name}.real`)];
  };
  const unswap = (name: string) => () => { fs.rmSync(member(name)); fs.renameSync(member(`${name}.real`), member(name)); };
  const metaLink = path.join(sandbox, 'meta-link');
  const metaHard = path.join(sandbox, 'meta-hard');
  const layers = missingMount() === undefined;
  if (!layers) t.diagnostic(`layer cases skipped: ${missingMount()}`);

  const cases: Case[] = [
    // Thin ids are numbers: anything else is refused before a file is named.
    { name: 'thin id "../1"', args: ['thin', 'create', rel, '../1', '--size', '1M'], status: 2, says: /thin device id/ },
    { name: 'thin id "/etc/passwd"', args: ['thin', 'delete', rel, '/etc/passwd'], status: 2, says: /thin device id/ },
    // Outputs that point into the pool.
    { name: 'dump -o the pool\'s metadata', setup: () => [member('metadata')], args: ['dump', rel, '-o', 'pool/metadata'], status: 2, says: /inside pool directory.*\[E_INVALID\]/ },
    { name: 'dump -o a new file inside the pool', args: ['dump', rel, '-o', 'pool/new.xml'], status: 2, says: /inside pool directory/ },
    { name: 'dump -o through ..', setup: () => [member('pool.json')], args: ['dump', rel, '-o', '../sandbox/./pool/../pool/pool.json'], status: 2, says: /inside pool directory/ },
    { name: 'dump of a bare metadata file -o that file', setup: () => [member('metadata')], args: ['dump', 'pool/metadata', '-o', 'pool/metadata'], status: 2, says: /inside pool directory|the pool's device/ },
    { name: 'dump -o a symlink to the metadata', setup: () => { fs.symlinkSync(member('metadata'), metaLink); return [member('metadata')]; }, args: ['dump', rel, '-o', 'meta-link'], status: 2, says: /inside pool directory/, undo: () => fs.rmSync(metaLink) },
    { name: 'dump -o a hard link to the metadata', setup: () => { fs.linkSync(member('metadata'), metaHard); return [member('metadata')]; }, args: ['dump', rel, '-o', 'meta-hard'], status: 2, says: /the pool's device/, undo: () => fs.rmSync(metaHard) },
    { name: 'thin read -o the data file', setup: () => [member('data')], args: ['thin', 'read', rel, '1', '--length', '4096', '-o', 'pool/data'], status: 2, says: /inside pool directory/ },
    { name: 'thin export onto pool.json', setup: () => [member('pool.json')], args: ['thin', 'export', rel, '1', `${pool}/pool.json`], status: 2, says: /inside pool directory/ },
    { name: 'thin export onto the metadata by absolute path', setup: () => [member('metadata')], args: ['thin', 'export', rel, '1', member('metadata')], status: 2, says: /inside pool directory/ },
    // Pool members replaced by symbolic links to files outside.
    { name: 'pool.json -> ../../victim.json (a write verb)', setup: swap('pool.json', path.join(parent, 'victim.json')), args: ['thin', 'create', rel, '7', '--size', '1M'], status: 2, says: /pool\.json is a symbolic link.*\[E_INVALID\]/, undo: unswap('pool.json') },
    { name: 'pool.json -> victim.json (pool status)', setup: swap('pool.json', path.join(parent, 'victim.json')), args: ['pool', 'status', rel], status: 2, says: /symbolic link/, undo: unswap('pool.json') },
    { name: 'data -> victim.txt (a write)', setup: swap('data', path.join(parent, 'victim.txt')), args: ['thin', 'write', rel, '1', '-i', 'four-k', '--offset', '65536'], status: 2, says: /data is a symbolic link/, undo: unswap('data') },
    { name: 'metadata -> victim.txt (a discard)', setup: swap('metadata', path.join(parent, 'victim.txt')), args: ['thin', 'discard', rel, '1', '--length', '4096'], status: 2, says: /metadata is a symbolic link/, undo: unswap('metadata') },
    { name: 'pool.lock -> victim.txt', setup: () => { fs.symlinkSync(path.join(parent, 'victim.txt'), member('pool.lock')); return []; }, args: ['thin', 'create', rel, '7', '--size', '1M'], status: 2, says: /pool\.lock is a symbolic link/, undo: () => fs.rmSync(member('pool.lock')) },
    { name: 'pool.json naming a data file outside the pool by ..', setup: () => { const f = member('pool.json'); const keep = fs.readFileSync(f, 'utf8'); fs.writeFileSync(path.join(sandbox, 'table.keep'), keep); const tb = JSON.parse(keep); tb.dataDev = '../../victim.txt'; fs.writeFileSync(f, JSON.stringify(tb)); return [member('data')]; }, args: ['thin', 'write', rel, '1', '-i', 'four-k'], status: 2, says: /dataDev.*leaves the pool directory.*\[E_PARSE\]/, undo: () => fs.renameSync(path.join(sandbox, 'table.keep'), member('pool.json')) },
    { name: 'pool create where data is a planted link', setup: () => { fs.mkdirSync(path.join(sandbox, 'p2')); fs.symlinkSync(path.join(parent, 'victim.txt'), path.join(sandbox, 'p2', 'data')); return []; }, args: ['pool', 'create', 'p2', '--data-size', '64M'], status: 2, says: /data is a symbolic link/, undo: () => fs.rmSync(path.join(sandbox, 'p2'), { recursive: true }) },
    { name: 'restore into a directory whose metadata is a planted link', setup: () => { fs.mkdirSync(path.join(sandbox, 'r2')); fs.symlinkSync(path.join(parent, 'victim.txt'), path.join(sandbox, 'r2', 'metadata')); ok(['dump', rel, '-o', 'm.xml']); return []; }, args: ['restore', 'r2', '-i', 'm.xml'], status: 2, says: /metadata is a symbolic link/, undo: () => fs.rmSync(path.join(sandbox, 'r2'), { recursive: true }) },
    // Names that look like paths: layer keys and names live in records, never as file names.
    { name: 'layer key "../../victim.txt"', layers: true, args: ['layer', 'prepare', rel, '../../victim.txt', '--base-size', '64M'], status: 0 },
    { name: 'layer key "/etc/passwd"', layers: true, args: ['layer', 'prepare', rel, '/etc/passwd'], status: 0 },
    { name: 'layer key "a/../../../victim-dir/x"', layers: true, args: ['layer', 'prepare', rel, 'a/../../../victim-dir/x'], status: 0 },
    { name: 'layer commit with a ChainID that climbs', layers: true, args: ['layer', 'commit', rel, '../../etc/passwd', '/etc/passwd', '--chain-id', 'sha256:../../../../victim-dir'], status: 2, says: /chainId must be "sha256:"/ },
    { name: 'layer commit named "../../etc/passwd"', layers: true, args: ['layer', 'commit', rel, '../../etc/passwd', '/etc/passwd'], status: 0 },
    { name: 'layer rm "../../victim.txt"', layers: true, args: ['layer', 'rm', rel, '../../victim.txt'], status: 0 },
    { name: 'layer rm of a path that is no layer', layers: true, args: ['layer', 'rm', rel, '../../../victim-dir'], status: 1, says: /E_NOT_FOUND/ },
    { name: 'image rm "../../victim.json"', layers: true, args: ['image', 'rm', rel, '../../victim.json'], status: 1, says: /E_NOT_FOUND/ },
    { name: 'container create named "../../victim-dir"', layers: true, args: ['container', 'create', rel, 'nope', '../../victim-dir'], status: 2, says: /container name/ },
    { name: 'docker/ -> victim-dir (a layer write)', layers: true, setup: () => { swap('docker', path.join(parent, 'victim-dir'))(); return []; }, args: ['layer', 'prepare', rel, 'k2'], status: 2, says: /docker is a symbolic link/, undo: unswap('docker') },
  ];

  for (const c of cases) {
    if (c.layers && !layers) continue;
    await t.test(c.name, () => {
      const before = snapshot(parent, sandbox);
      const guarded = c.setup?.() ?? [];
      const hashes = guarded.map(hashOf);
      try {
        const r = cli(sandbox, c.args);
        assert.equal(r.status, c.status, `exit ${r.status}, want ${c.status}: ${r.stderr}`);
        if (c.says) assert.match(r.stderr, c.says);
        assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, 'no stack trace');
        assert.deepEqual(guarded.map(hashOf), hashes, 'the pool files the case aimed at are unchanged');
      } finally {
        c.undo?.();
      }
      assert.deepEqual(snapshot(parent, sandbox), before, 'nothing outside the sandbox changed');
    });
  }
  await t.test('the pool is sound after all cases', () => {
    ok(['check', rel]);
    const r = cli(sandbox, ['thin', 'read', rel, '1', '--length', '4096']);
    assert.equal(r.stdout, 'Z'.repeat(4096), 'the data written first reads back');
  });
});

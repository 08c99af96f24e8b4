#!/usr/bin/env node
// Enforces the layer rule of docs/architecture.md over src/: imports point down only,
//   cli -> experiments -> containerd -> layers -> mounts -> nbd -> pool -> thin -> pdata -> io,
// each layer talks to the layers listed for it below and nothing else; hot, errors,
// units and version are usable from anywhere; nothing imports cli; only src/hot
// loads the native addon. Also: no file outside pdata imports pdata's node codec
// (only pdata decodes node bytes; the checker uses its accessors), and no file outside thin and pdata
// reaches the block manager, transaction manager or space maps.
// Exit 1 with every violation listed.
'use strict';
const fs = require('fs');
const path = require('path');

const SRC = path.join(__dirname, '..', 'src');

/** Which layers each layer may import (besides itself and the ANYWHERE modules). */
const MAY_IMPORT = {
  io: [],
  pdata: ['io'],
  thin: ['pdata', 'io'], // thin opens the devices its metadata lives on
  pool: ['thin', 'io'], // the data device is an io device
  nbd: ['pool'],
  mounts: ['nbd', 'pool'], // a thin device as a block device: NBD export, nbdfuse, loop, mount
  layers: ['mounts', 'nbd', 'pool'], // layers mount through the mounts layer and name pool devices
  containerd: ['layers', 'mounts', 'pool'], // containerd's snapshotter API over a layer store
  experiments: ['containerd', 'layers', 'mounts', 'nbd', 'pool'],
  cli: ['experiments', 'containerd', 'layers', 'mounts', 'nbd', 'pool', 'thin', 'io'],
};
const ANYWHERE = new Set(['hot', 'errors', 'units', 'version', 'types', 'random', 'tools', 'durable', 'crash-points']); // types: ambient declarations
/** Modules that only their own layer may import: the bytes and the transactional machinery. */
const PRIVATE = [
  // The checker walks damaged trees node by node, through pdata's node accessors (which
  // decode the bytes); every other reader goes through the B-tree API.
  { re: /^pdata\/btree\/node$/, owner: ['pdata'], also: /^thin\/check\//, why: 'only pdata decodes node bytes (and the checker through its node API); use the B-tree API' },
  { re: /^pdata\/(block-manager|transaction-manager|space-map\/)/, owner: ['pdata', 'thin'], why: 'only thin uses the block manager, transaction manager and space maps; use ThinMetadata' },
];

function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

const layerOf = (rel) => rel.split(path.sep)[0].replace(/\.ts$/, '');
const problems = [];
for (const file of walk(SRC)) {
  const rel = path.relative(SRC, file);
  const from = layerOf(rel);
  if (from !== 'index' && !ANYWHERE.has(from) && !MAY_IMPORT[from]) {
    problems.push(`${rel}: unknown layer "${from}"; add it to MAY_IMPORT in scripts/check-layers.js and to docs/architecture.md`);
    continue;
  }
  const text = fs.readFileSync(file, 'utf8');
  const re = /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  let m;
  while ((m = re.exec(text))) {
    const spec = m[1] || m[2] || m[3];
    if (/\.node$|native\//.test(spec) && from !== 'hot') problems.push(`${rel}: only src/hot may load the native addon (${spec})`);
    if (!spec.startsWith('.')) continue;
    const target = path.relative(SRC, path.resolve(path.dirname(file), spec));
    if (target.startsWith('..')) { problems.push(`${rel}: imports from outside src (${spec})`); continue; }
    const to = layerOf(target);
    for (const p of PRIVATE) {
      const relPosix = rel.split(path.sep).join('/');
      if (p.re.test(target.split(path.sep).join('/')) && !p.owner.includes(from) && !(p.also && p.also.test(relPosix))) problems.push(`${rel}: imports ${target} (${p.why})`);
    }
    if (to === from || ANYWHERE.has(to)) continue;
    if (to === 'cli') { problems.push(`${rel}: nothing may import cli (${spec})`); continue; }
    if (to === 'index') { problems.push(`${rel}: layers must not import the public index (${spec})`); continue; }
    if (from === 'index') continue; // the public API re-exports every layer
    if (ANYWHERE.has(from)) { problems.push(`${rel}: ${from} is usable from anywhere, so it may import only other such modules (${spec})`); continue; }
    if (!MAY_IMPORT[from].includes(to)) {
      problems.push(`${rel}: ${from} may not import ${to} (${spec}); ${from} may import ${MAY_IMPORT[from].join(', ') || 'no other layer'}`);
    }
  }
}
if (problems.length) {
  console.error(`layer check failed (${problems.length}):\n  ` + problems.join('\n  '));
  process.exit(1);
}
console.log('layer check: imports point down');

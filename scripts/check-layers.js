#!/usr/bin/env node
// Enforces the layer rule of ARCHITECTURE.md over the compiled-from sources:
// imports point down only: cli -> (experiments, nbd, layers) -> pool -> thin -> pdata -> io;
// hot, errors, units and types are usable from anywhere; nothing imports cli.
// Only src/hot may import the native addon. Exit 1 with every violation listed.
'use strict';
const fs = require('fs');
const path = require('path');

const SRC = path.join(__dirname, '..', 'src');
const RANK = { io: 0, pdata: 1, thin: 2, pool: 3, layers: 4, nbd: 4, experiments: 4, cli: 5 };
const ANYWHERE = new Set(['hot', 'errors', 'units', 'types', 'version']);

function layerOf(rel) {
  const first = rel.split(path.sep)[0].replace(/\.ts$/, '');
  return first;
}

function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

const problems = [];
for (const file of walk(SRC)) {
  const rel = path.relative(SRC, file);
  const from = layerOf(rel);
  const text = fs.readFileSync(file, 'utf8');
  const re = /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  let m;
  while ((m = re.exec(text))) {
    const spec = m[1] || m[2] || m[3];
    if (/\.node$|native\//.test(spec) && from !== 'hot') problems.push(`${rel}: only src/hot may load the native addon (${spec})`);
    if (!spec.startsWith('.')) continue;
    const target = path.relative(SRC, path.resolve(path.dirname(file), spec));
    if (target.startsWith('..')) continue;
    const to = layerOf(target);
    if (to === from || ANYWHERE.has(to) || from === 'index') continue;
    if (to === 'cli') { problems.push(`${rel}: nothing may import cli (${spec})`); continue; }
    if (to === 'index') { problems.push(`${rel}: layers must not import the public index (${spec})`); continue; }
    const rf = RANK[from], rt = RANK[to];
    if (rf === undefined || rt === undefined) { problems.push(`${rel}: unknown layer in import ${spec} (${from} -> ${to}); add it to scripts/check-layers.js`); continue; }
    if (rt >= rf) problems.push(`${rel}: ${from} must not import ${to} (${spec}); imports point down: cli -> experiments/nbd/layers -> pool -> thin -> pdata -> io`);
    else if (from !== 'cli' && rf - rt > 1 && !(from === 'thin' && to === 'io') && !(rf === 4 && to === 'pool')) {
      // A layer talks to the one below; thin may name io types (devices it opens).
      if (!(from === 'pool' && to === 'io')) problems.push(`${rel}: ${from} reaches past the layer below it into ${to} (${spec})`);
    }
  }
}
if (problems.length) {
  console.error(`layer check failed (${problems.length}):\n  ` + problems.join('\n  '));
  process.exit(1);
}
console.log('layer check: imports point down');

/**
 * docs/architecture.md's error table is true: it lists every ThinError code that
 * src/errors.ts declares, and the exit status it gives for each is the one the CLI's
 * exitCodeFor returns. Usage errors from yargs and OS errors that escape a verb map as
 * the page says (2, and by errno).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError, type ThinErrorCode } from '../../src/errors';
import { exitCodeFor, joinOptionValues } from '../../src/cli/main';
import { repoRoot } from '../helpers/oracle';

test('the error table in docs/architecture.md lists every code with the CLI\'s exit status', () => {
  const declared = [...fs.readFileSync(path.join(repoRoot(), 'src', 'errors.ts'), 'utf8').matchAll(/\|\s*'(E[A-Z_]+)'/g)].map((m) => m[1]);
  assert.ok(declared.length >= 20, `codes found in src/errors.ts: ${declared.join(' ')}`);
  const doc = fs.readFileSync(path.join(repoRoot(), 'docs', 'architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Errors'), doc.indexOf('\n## ', doc.indexOf('## Errors') + 1));
  const documented = new Map<string, number>();
  for (const line of section.split('\n')) {
    const m = /^\| (`E[A-Z_]+`(?:, `E[A-Z_]+`)*) \| .* \| (\d) \|$/.exec(line);
    if (!m) continue;
    for (const c of m[1].matchAll(/`(E[A-Z_]+)`/g)) documented.set(c[1], Number(m[2]));
  }
  assert.deepEqual([...documented.keys()].sort(), [...declared].sort(), 'the table lists exactly the declared codes');
  for (const code of declared) {
    assert.equal(exitCodeFor(new ThinError(code as ThinErrorCode, 'x')), documented.get(code), `${code}: exit status as documented`);
  }
});

test('usage errors exit 2; an OS error that escapes a verb maps by its errno', () => {
  assert.equal(exitCodeFor('give --data-size and/or --metadata-size'), 2, 'a .check() message');
  const yerr = Object.assign(new Error('Not enough non-option arguments'), { name: 'YError' });
  assert.equal(exitCodeFor(yerr), 2, 'a YError');
  const enoent = Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT', syscall: 'open', path: '/x' });
  assert.equal(exitCodeFor(enoent), 1);
  assert.equal(exitCodeFor(new Error('a bug')), 1);
});

test('--size -5G and --no-space-timeout 30 reach the verb as values', () => {
  assert.deepEqual(joinOptionValues(['thin', 'create', 'p', '1', '--size', '-5G']), ['thin', 'create', 'p', '1', '--size=-5G']);
  assert.deepEqual(joinOptionValues(['pool', 'create', 'p', '--no-space-timeout', '30']), ['pool', 'create', 'p', '--no-space-timeout=30']);
  assert.deepEqual(joinOptionValues(['ls', 'p', '--no-headers', '--json']), ['ls', 'p', '--no-headers', '--json'], 'a negated flag stays a flag');
  assert.deepEqual(joinOptionValues(['thin', 'create', 'p', '-1', '--size', '1M']), ['thin', 'create', 'p', '-1', '--size', '1M'], 'a negative positional is left to the verb');
});

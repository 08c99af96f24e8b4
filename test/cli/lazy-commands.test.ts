/**
 * The CLI loads only the verb it runs (src/cli/main.ts, issue 19's start-up cost):
 * VERB_MODULES names exactly the verbs ./commands lists, each loading the same module, and
 * a fresh process running an offline verb never loads the pool engine, the NBD server,
 * gRPC, tar or the chart renderer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { commands } from '../../src/cli/commands';
import { commandsFor, VERB_MODULES } from '../../src/cli/main';

const firstWord = (c: { command?: string | readonly string[] }): string => String(Array.isArray(c.command) ? c.command[0] : c.command).split(' ')[0];

test('VERB_MODULES has one loader per top-level verb, giving the module ./commands lists', () => {
  assert.deepEqual(Object.keys(VERB_MODULES).sort(), commands.map(firstWord).sort());
  for (const c of commands) assert.equal(VERB_MODULES[firstWord(c)](), c, `${firstWord(c)}: the same module`);
});

test('commandsFor: the named verb alone, none for --version, every verb otherwise', () => {
  assert.deepEqual(commandsFor(['dump', 'x']).map(firstWord), ['dump']);
  assert.deepEqual(commandsFor(['--version']), []);
  assert.equal(commandsFor(['--help']).length, commands.length);
  assert.equal(commandsFor(['dumpp']).length, commands.length, 'a misspelt verb gets every verb, for the suggestion');
  assert.equal(commandsFor(['toString']).length, commands.length, 'no inherited property passes for a verb');
});

test('a fresh process running an offline verb loads none of the heavy modules', () => {
  const main = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');
  for (const verb of ['dump', 'ls', 'delta', 'check', 'restore']) {
    // The verb's module and what it imports at the top, as a run of that verb loads them.
    const script = `const m = require(${JSON.stringify(main)}); m.commandsFor([${JSON.stringify(verb)}]);
      process.stdout.write(JSON.stringify(Object.keys(require.cache)));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const loaded: string[] = JSON.parse(r.stdout);
    const heavy = loaded.filter((f) => /[\\/](@grpc|vega|vega-lite|tar-stream|saxes)[\\/]|[\\/]src[\\/](pool[\\/]pool|nbd|mounts|layers|containerd|experiments)[\\/.]/.test(f));
    assert.deepEqual(heavy, [], `${verb} loads only what it uses`);
    assert.ok(loaded.some((f) => f.endsWith(path.join('commands', `${verb}.js`))), `${verb}: its own module is loaded`);
  }
});

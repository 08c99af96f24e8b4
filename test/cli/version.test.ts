/**
 * `thinsim --version` names the version and the hot-path implementation in use: the native
 * addon, the twins by THINSIM_NO_NATIVE=1, or the twins because the addon was never built
 * (checked in a scratch copy of the package without native/, as `npm install` leaves it on
 * a machine without cargo). There the library still works, and requireNative says what to
 * install.
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../../..');
const VERSION: string = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;

function version(root: string, env: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/thinsim.js'), '--version'], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout;
}

function envWithout(name: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env[name];
  return env;
}

test('--version: the native addon when it is built, else the twins saying why', () => {
  const built = fs.existsSync(path.join(ROOT, 'native/thinsim.node'));
  const expected = built ? 'native addon: native/thinsim.node' : 'TypeScript twins: the native addon was not built';
  assert.equal(version(ROOT, envWithout('THINSIM_NO_NATIVE')), `thinsim ${VERSION} (${expected})\n`);
});

test('--version under THINSIM_NO_NATIVE=1 names the twins and the variable', () => {
  assert.equal(version(ROOT, { ...process.env, THINSIM_NO_NATIVE: '1' }), `thinsim ${VERSION} (TypeScript twins: THINSIM_NO_NATIVE=1)\n`);
});

test('a package without native/thinsim.node runs on the twins and says so', (t) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-no-addon-'));
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  // The installed layout minus the addon: package.json, bin/, dist/src/, node_modules.
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(scratch, 'package.json'));
  fs.cpSync(path.join(ROOT, 'bin'), path.join(scratch, 'bin'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist/src'), path.join(scratch, 'dist/src'), { recursive: true });
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules')), path.join(scratch, 'node_modules'));
  const env = envWithout('THINSIM_NO_NATIVE');
  assert.equal(version(scratch, env), `thinsim ${VERSION} (TypeScript twins: the native addon was not built)\n`);

  const probe = `
    const h = require(${JSON.stringify(path.join(scratch, 'dist/src/hot'))});
    const out = { native: h.hot.native, state: h.addonState.kind, crc: h.hot.crc32c(Buffer.from('123456789')) };
    try { h.requireNative('direct-lvm'); } catch (e) { out.code = e.code; out.message = e.message; }
    process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['-e', probe], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'a missing addon prints nothing');
  const out = JSON.parse(r.stdout);
  assert.equal(out.native, false);
  assert.equal(out.state, 'missing');
  // The standard CRC-32C check value of "123456789" is 0xE3069283 (raw register = its complement).
  assert.equal((out.crc ^ 0xffffffff) >>> 0, 0xe3069283, 'the twins serve');
  assert.equal(out.code, 'E_NATIVE');
  assert.match(out.message, /^direct-lvm: this needs thinsim's native addon, but it was not built/);
  assert.match(out.message, /install Rust \(cargo\) and run `npm run build:native`/);
});

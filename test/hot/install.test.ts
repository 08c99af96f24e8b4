/**
 * The install-time build (scripts/build-native.js, package.json "install"): without cargo,
 * `npm run install` succeeds with exactly one warning and the TypeScript build still runs;
 * `npm run build:native` without cargo fails; a cargo whose build fails fails loudly even
 * at install; THINSIM_NO_NATIVE=1 skips the build. Each case runs the real script (or npm)
 * with a PATH made for it, and none may touch the repository's native/thinsim.node.
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../../..');
const SCRIPT = path.join(ROOT, 'scripts/build-native.js');
const ADDON = path.join(ROOT, 'native/thinsim.node');
const WARNING =
  'thinsim: cargo not found; the native addon was not built, the TypeScript twins will serve ' +
  '(as under THINSIM_NO_NATIVE=1). Install Rust and run `npm run build:native` for the faster path.';

function scratch(t: { after(fn: () => void): void }, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A directory with just `cargo`: one that prints a version and fails everything else. */
function brokenBuildCargo(dir: string): string {
  const bin = path.join(dir, 'fake-cargo');
  fs.mkdirSync(bin);
  const cargo = path.join(bin, 'cargo');
  fs.writeFileSync(cargo, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "cargo 0.0.0-fake"; exit 0; fi\necho "fake cargo: refusing $*" >&2\nexit 101\n');
  fs.chmodSync(cargo, 0o755);
  return bin;
}

/** Environment for a child: this process's, minus the switches that change the decision. */
function childEnv(pathValue: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: pathValue, npm_config_update_notifier: 'false', ...extra };
  if (!('THINSIM_NO_NATIVE' in extra)) delete env.THINSIM_NO_NATIVE;
  return env;
}

function runScript(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { cwd: ROOT, env, encoding: 'utf8' });
}

/** The addon's identity, to check a run left it alone (undefined when it is not built). */
function addonStamp(): string | undefined {
  if (!fs.existsSync(ADDON)) return undefined;
  const st = fs.statSync(ADDON);
  return `${st.size}:${st.mtimeMs}:${st.ino}`;
}

test('no cargo on PATH: --if-cargo warns once and exits 0; a plain build fails', (t) => {
  const empty = scratch(t, 'thinsim-nocargo-');
  const before = addonStamp();
  const r = runScript(['--if-cargo'], childEnv(empty));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `${WARNING}\n`, 'exactly one warning');

  const plain = runScript([], childEnv(empty));
  assert.equal(plain.status, 1);
  assert.match(plain.stderr, /cargo not found; install Rust \(cargo\)/);
  assert.equal(addonStamp(), before, 'native/thinsim.node untouched');
});

test('cargo present but the build fails: exit 1 even at install, saying how to skip', (t) => {
  const bin = brokenBuildCargo(scratch(t, 'thinsim-badcargo-'));
  const before = addonStamp();
  for (const args of [['--if-cargo'], []]) {
    const r = runScript(args, childEnv(bin));
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /fake cargo: refusing/, 'the build really ran cargo');
    assert.match(r.stderr, /thinsim: building the native addon failed .*THINSIM_NO_NATIVE=1/);
  }
  assert.equal(addonStamp(), before, 'native/thinsim.node untouched');
});

test('THINSIM_NO_NATIVE=1 at install skips the build', (t) => {
  const bin = brokenBuildCargo(scratch(t, 'thinsim-skipcargo-'));
  const r = runScript(['--if-cargo'], childEnv(bin, { THINSIM_NO_NATIVE: '1' }));
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /fake cargo/, 'cargo was not run');
  assert.match(r.stderr, /THINSIM_NO_NATIVE=1; the native addon was not built/);
});

test('`npm run install` in a copy of the package on a PATH without cargo: exit 0, one warning, TS built', (t) => {
  const npm = path.join(path.dirname(process.execPath), 'npm');
  if (!fs.existsSync(npm)) {
    t.skip(`no npm next to ${process.execPath}`);
    return;
  }
  const dir = scratch(t, 'thinsim-install-');
  const pkg = path.join(dir, 'pkg');
  fs.mkdirSync(pkg);
  for (const f of ['package.json', 'tsconfig.json', 'Cargo.toml', 'Cargo.lock']) fs.copyFileSync(path.join(ROOT, f), path.join(pkg, f));
  for (const d of ['bin', 'scripts', 'src']) fs.cpSync(path.join(ROOT, d), path.join(pkg, d), { recursive: true });
  fs.cpSync(path.join(ROOT, 'native'), path.join(pkg, 'native'), { recursive: true, filter: (src) => !src.endsWith('.node') });
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules')), path.join(pkg, 'node_modules'));
  // PATH holds node, npm and the shell npm runs scripts with: no cargo, wherever the
  // machine keeps it.
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync(fs.realpathSync(npm), path.join(bin, 'npm'));
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));

  const r = spawnSync(path.join(bin, 'npm'), ['run', 'install'], { cwd: pkg, env: childEnv(bin), encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(r.stderr.split(WARNING).length - 1, 1, `one warning in:\n${r.stderr}`);
  assert.match(r.stdout, /tsc -p tsconfig\.json/, 'build:ts ran');
  assert.ok(fs.existsSync(path.join(pkg, 'dist/src/hot/index.js')), 'the TypeScript build produced dist/');
  assert.ok(!fs.existsSync(path.join(pkg, 'native/thinsim.node')));
  const v = spawnSync(process.execPath, [path.join(pkg, 'bin/thinsim.js'), '--version'], { env: childEnv(bin), encoding: 'utf8' });
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /\(TypeScript twins: the native addon was not built\)\n$/);
});

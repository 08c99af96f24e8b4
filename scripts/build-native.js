#!/usr/bin/env node
// Builds the native addon native/thinsim.node with @napi-rs/cli (cargo underneath).
//
//   node scripts/build-native.js             npm run build:native: build it, or fail
//   node scripts/build-native.js --if-cargo  npm install: build it when cargo is there
//
// Decisions (the addon only makes thinsim faster; the TypeScript twins in src/hot do the
// same work, as under THINSIM_NO_NATIVE=1):
// - cargo not on PATH: with --if-cargo, print one warning and exit 0, so `npm install`
//   succeeds on a machine without Rust; without it, fail saying what to install.
// - cargo on PATH but the build fails: fail loudly (exit 1), with or without --if-cargo.
//   A broken toolchain or a compile error is a real problem, and hiding it behind a
//   slower thinsim would leave it unnoticed; to install anyway, set THINSIM_NO_NATIVE=1.
// - THINSIM_NO_NATIVE=1 with --if-cargo: skip the build (a note, exit 0).
// Any further arguments go to `napi build` (e.g. `npm run build:native -- --target ...`).
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const ROOT = path.join(__dirname, '..');

const MISSING_WARNING =
  'thinsim: cargo not found; the native addon was not built, the TypeScript twins will serve ' +
  '(as under THINSIM_NO_NATIVE=1). Install Rust and run `npm run build:native` for the faster path.';

/** Whether `cargo` runs from PATH: 'present', 'missing', or 'broken' (found, but `cargo --version` fails). */
function cargoState(env) {
  const r = spawnSync('cargo', ['--version'], { env, stdio: 'ignore' });
  if (r.error) return r.error.code === 'ENOENT' ? 'missing' : 'broken';
  return r.status === 0 ? 'present' : 'broken';
}

/** The command that builds the addon: @napi-rs/cli's `napi build`, run with this node. */
function napiBuild(extra) {
  const pkgPath = require.resolve('@napi-rs/cli/package.json', { paths: [ROOT] });
  const bin = require(pkgPath).bin.napi;
  return [
    process.execPath,
    [path.join(path.dirname(pkgPath), bin), 'build', '--release', '--manifest-path', 'native/Cargo.toml', '--output-dir', 'native', ...extra],
  ];
}

function main(argv, env) {
  const ifCargo = argv.includes('--if-cargo');
  const extra = argv.filter((a) => a !== '--if-cargo');
  if (ifCargo && env.THINSIM_NO_NATIVE === '1') {
    console.warn('thinsim: THINSIM_NO_NATIVE=1; the native addon was not built, the TypeScript twins will serve.');
    return 0;
  }
  const cargo = cargoState(env);
  if (cargo === 'missing') {
    if (ifCargo) {
      console.warn(MISSING_WARNING);
      return 0;
    }
    console.error('thinsim: cargo not found; install Rust (cargo) to build the native addon.');
    return 1;
  }
  if (cargo === 'broken') {
    console.error('thinsim: `cargo --version` failed; fix the Rust toolchain, or set THINSIM_NO_NATIVE=1 to install without the native addon.');
    return 1;
  }
  const [cmd, args] = napiBuild(extra);
  const r = spawnSync(cmd, args, { cwd: ROOT, env, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      `thinsim: building the native addon failed (${r.error ? r.error.message : `exit ${r.status ?? r.signal}`}). ` +
        'Fix the error above, or set THINSIM_NO_NATIVE=1 to install without the native addon (the TypeScript twins then serve).',
    );
    return 1;
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2), process.env);

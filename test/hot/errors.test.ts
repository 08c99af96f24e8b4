/**
 * Errors out of src/hot are ThinErrors: real syscall failures (a read-only destination,
 * a full device) give the same code and errno on the addon and the twin, sync and async;
 * the errno -> code mapping agrees with the rest of thinsim (ioError); and the addon's own
 * error plumbing holds up in a clean process (no factory, a factory that throws, a
 * replaced factory) and in a worker thread (a second Node-API env).
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { eachImpl, SKIP_REASON } from './impls';
import { addonState, nativeImpl } from '../../src/hot';
import { codeForErrno } from '../../src/hot/errors';
import { ioError, isThinError, ThinError } from '../../src/errors';

function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-hot-errors-'));
  return (async () => {
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  })();
}

/** A ThinError with `code`, the errno name in details, a syscall name, and the errno in the message. */
function isSyscallError(code: string, errno: string) {
  return (e: unknown): boolean =>
    e instanceof ThinError &&
    e.code === code &&
    e.details.errno === errno &&
    typeof e.details.syscall === 'string' &&
    e.message.includes(errno);
}

test('copying to a read-only descriptor: ThinError E_IO with errno EBADF, sync and async', (t) =>
  eachImpl(t, (impl) =>
    withDir(async (dir) => {
      const file = path.join(dir, 'a');
      fs.writeFileSync(file, Buffer.alloc(4096, 0x5a));
      const ro = fs.openSync(file, 'r');
      try {
        assert.throws(() => impl.copyRange(ro, 0, ro, 8192, 100), isSyscallError('E_IO', 'EBADF'));
        await assert.rejects(impl.copyRangeAsync(ro, 0, ro, 8192, 100), isSyscallError('E_IO', 'EBADF'));
        assert.throws(() => impl.zeroRange(ro, 0, 100, false), isSyscallError('E_IO', 'EBADF'));
      } finally {
        fs.closeSync(ro);
      }
      assert.ok(fs.readFileSync(file).equals(Buffer.alloc(4096, 0x5a)), 'the file is untouched');
    })));

test('copying to a full device: ThinError ENOSPC with errno ENOSPC, sync and async', (t) => {
  if (!fs.existsSync('/dev/full')) {
    t.skip('no /dev/full on this system');
    return;
  }
  return eachImpl(t, (impl) =>
    withDir(async (dir) => {
      fs.writeFileSync(path.join(dir, 'a'), Buffer.alloc(65536, 1));
      const src = fs.openSync(path.join(dir, 'a'), 'r');
      const full = fs.openSync('/dev/full', 'w');
      try {
        assert.throws(() => impl.copyRange(src, 0, full, 0, 65536), isSyscallError('ENOSPC', 'ENOSPC'));
        await assert.rejects(impl.copyRangeAsync(src, 0, full, 0, 65536), isSyscallError('ENOSPC', 'ENOSPC'));
      } finally {
        fs.closeSync(src);
        fs.closeSync(full);
      }
    }));
});

test('errno -> code agrees with ioError, the mapping the other layers use', () => {
  for (const errno of ['EIO', 'EBADF', 'EINVAL', 'EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'ENOENT', 'EXDEV', 'ERRNO_9999']) {
    assert.equal(codeForErrno(errno), ioError('test', 'file', Object.assign(new Error(errno), { code: errno })).code, errno);
  }
  // Quota exhaustion is running out of space too (ioError predates it).
  assert.equal(codeForErrno('EDQUOT'), 'ENOSPC');
});

/** Run `script` in a fresh node process with ADDON set to the addon's path; its stdout as JSON. */
function runWithAddon(script: string): Record<string, unknown> {
  assert.ok(addonState.kind === 'loaded');
  const r = spawnSync(process.execPath, ['-e', `const ADDON = ${JSON.stringify(addonState.file)};\n${script}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('the raw addon: plain coded errors without a factory; a throwing factory wins; a factory can be replaced', (t) => {
  if (nativeImpl === undefined) {
    t.skip(SKIP_REASON);
    return;
  }
  const out = runWithAddon(`
    const addon = require(ADDON);
    const out = {};
    const show = (e) => ({ ctor: e.constructor.name, code: e.code, message: e.message });
    try { addon.bitmapGet('x', 0); } catch (e) { out.plain = show(e); }
    try { addon.copyRange(1e6, 0, 1e6, 0, 1); } catch (e) { out.plainSys = show(e); }
    addon.setErrorFactory(() => { throw new SyntaxError('the factory says no'); });
    try { addon.bitmapGet('x', 0); } catch (e) { out.thrown = show(e); }
    addon.copyRangeAsync(1e6, 0, 1e6, 0, 1).then(
      () => { out.async = 'resolved'; },
      (e) => { out.async = show(e); },
    ).then(() => {
      addon.setErrorFactory((kind, message, errno, syscall) => ({ kind, message, errno, syscall }));
      try { addon.copyRange(1e6, 0, 1e6, 0, 1); } catch (e) { out.replaced = e; }
      try { addon.setErrorFactory(5); } catch (e) { out.badFactory = e; }
      process.stdout.write(JSON.stringify(out));
    });
  `);
  assert.deepEqual(out.plain, { ctor: 'Error', code: 'E_INVALID', message: 'buf must be a Uint8Array' });
  assert.equal((out.plainSys as { code: string }).code, 'EBADF');
  assert.deepEqual(out.thrown, { ctor: 'SyntaxError', message: 'the factory says no' });
  assert.deepEqual(out.async, { ctor: 'SyntaxError', message: 'the factory says no' }, 'a rejection, not an uncaught exception');
  assert.deepEqual(out.replaced, {
    kind: 'sys',
    message: 'copy_file_range failed: EBADF: Bad file descriptor (os error 9)',
    errno: 'EBADF',
    syscall: 'copy_file_range',
  });
  assert.deepEqual(out.badFactory, { kind: 'invalid', message: 'factory must be a function' });
});

test('in a worker thread (a second Node-API env) errors are ThinErrors too', async (t) => {
  if (nativeImpl === undefined) {
    t.skip(SKIP_REASON);
    return;
  }
  const hotModule = require.resolve('../../src/hot');
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const h = require(${JSON.stringify(hotModule)});
     const r = { native: h.hot.native };
     try { h.hot.bitmapGet(Buffer.alloc(1), 4); } catch (e) { r.name = e.name; r.code = e.code; }
     h.hot.copyRangeAsync(1e6, 0, 1e6, 0, 1).catch((e) => { r.asyncCode = e.code; r.errno = e.details.errno; parentPort.postMessage(r); });`,
    { eval: true },
  );
  const r = await new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.deepEqual(r, { native: true, name: 'ThinError', code: 'E_INVALID', asyncCode: 'E_IO', errno: 'EBADF' });
});

test('isThinError sees hot-path errors from both implementations', (t) =>
  eachImpl(t, (impl) => {
    assert.throws(() => impl.alignedBuffer(4096, 3), (e) => isThinError(e, 'E_INVALID'));
  }));

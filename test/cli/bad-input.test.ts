/**
 * Bad input through the real CLI (node bin/thinsim.js), one row per mistake
 * (bad-input-cases.ts): the exit status, the words of the message and its error code,
 * never a stack trace or "internal error"; and the pool afterwards, byte for byte
 * unchanged where the command must not have written, or clean by `thinsim check` and by
 * thin-provisioning-tools' thin_check (1.x, else 0.9) where a server or a failed
 * operation had it open read-write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { skipPart, skipReason, tools09, tools1x } from '../helpers/oracle';
import { thinsim } from '../helpers/cli';
import { ROWS, type Row } from './bad-input-cases';
import { makeEnv, poolFingerprint, startServer, type Env } from './bad-input-env';

function metadataOf(pool: string): string {
  return path.join(pool, 'metadata');
}

test('bad input: clear errors, the right exit status, the pool left sound', async (t) => {
  const env = makeEnv();
  t.after(() => env.dir.cleanup());
  const checker = tools1x() ?? tools09();
  for (const row of ROWS) {
    await t.test(`${row.issue ? '[issue] ' : ''}${row.name}`, { skip: row.skip?.() }, async (tt) => {
      await runRow(tt, env, row, checker);
    });
  }
  // The shared pool, after every row: both checkers accept it.
  await t.test('the shared pool checks clean after all rows', (tt) => checkClean(tt, env.pool, checker));
});

async function runRow(t: import('node:test').TestContext, env: Env, row: Row, checker: ReturnType<typeof tools1x>): Promise<void> {
  row.setup?.(env);
  const pool = row.pool?.(env) ?? env.pool;
  const server = row.serving ? await startServer(row.serving(env), env.dir.file('serve.sock')) : undefined;
  const before = row.after === 'unchanged' ? poolFingerprint(pool) : undefined;
  let r;
  try {
    r = thinsim(row.args(env), { timeoutMs: 120_000 });
  } finally {
    if (server) assert.equal(await server.stop(), 0, 'the server stops cleanly on SIGTERM');
  }
  const shown = `thinsim ${row.args(env).join(' ')}\n--- stderr:\n${r.stderr}`;
  assert.equal(r.status, row.status, `exit status ${row.status}, got ${r.status}: ${shown}`);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at [^\n]*:\d+:\d+/, `no stack trace: ${shown}`);
  for (const w of row.words) assert.match(r.stderr, w, `the message says ${w}: ${shown}`);
  if (row.code) assert.match(r.stderr, new RegExp(`\\[${row.code}\\]`), `code ${row.code}: ${shown}`);
  if (row.after === 'unchanged') assert.equal(poolFingerprint(pool), before, `metadata and pool.json unchanged: ${shown}`);
  if (row.after === 'clean') checkClean(t, pool, checker);
  row.then?.(env);
}

function checkClean(t: import('node:test').TestContext, pool: string, checker: ReturnType<typeof tools1x>): void {
  const c = thinsim(['check', pool]);
  assert.equal(c.status, 0, `thinsim check ${pool}: ${c.stderr}`);
  if (!checker) return skipPart(t, 'thin_check', skipReason.tools1x || skipReason.tools09);
  const meta = pool.endsWith('ext-pool') ? path.join(path.dirname(pool), 'ext-meta') : metadataOf(pool);
  const tc = checker.check(meta);
  assert.equal(tc.status, 0, `thin_check ${checker.version} ${meta}: ${tc.stderr}`);
}

/**
 * Resource caps of the snapshotter's gRPC server (src/containerd/server.ts), pushed over
 * its real unix socket:
 * - a request over maxReceiveBytes fails with RESOURCE_EXHAUSTED before any handler runs
 *   (one just under it reaches the snapshotter, which answers with its own
 *   InvalidArgument), and the server keeps serving;
 * - the HTTP/2 SETTINGS the server sends advertise maxConcurrentStreams (read with
 *   node:http2, not from thinsim), and many more calls than that on one connection all
 *   complete with the right answers;
 * - maxConnections connections are served; one more is closed by the server at once, and
 *   after one closes a new one is served again;
 * - `thinsim snapshotter --max-connections` takes its value and refuses a bad one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { ThinSnapshotter, startSnapshotServer } from '../../src/containerd';
import { DEFAULT_SERVER_LIMITS } from '../../src/containerd/server';
import { tmpdir } from '../helpers/oracle';
import { thinsim } from '../helpers/cli';
import { createPool, grpcFailure, MiB, SnapshotsClient } from '../containerd/helpers';

/** A raw HTTP/2 connection to `sock`: resolves with the server's SETTINGS, or 'closed' if the server hangs up first. */
function h2(sock: string): Promise<{ session: http2.ClientHttp2Session; settings: http2.Settings } | 'closed'> {
  return new Promise((resolve) => {
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(sock) });
    session.once('remoteSettings', (settings) => resolve({ session, settings }));
    session.once('close', () => resolve('closed'));
    session.on('error', () => undefined); // a refused connection shows as 'close'
  });
}

test('snapshotter gRPC caps: message size, concurrent streams, connections', { timeout: 120_000 }, async (t) => {
  const d = tmpdir('thinsim-grpccaps-');
  t.after(() => d.cleanup());
  const pool = await createPool(d.file('pool'), 256 * MiB);
  const snap = await ThinSnapshotter.open(pool, { baseSize: 32 * MiB });
  const sock = d.file('s.sock');
  const logged: string[] = [];
  const limits = { maxConnections: 3, maxConcurrentStreams: 4 };
  const server = await startSnapshotServer(snap, sock, { limits, log: (m) => logged.push(m) });
  t.after(async () => { await server.stop(); await snap.close(); });

  await t.test('a request over maxReceiveBytes: RESOURCE_EXHAUSTED, the server goes on', async () => {
    const c = new SnapshotsClient(sock);
    try {
      const cap = DEFAULT_SERVER_LIMITS.maxReceiveBytes;
      const over = await grpcFailure(c.call('Prepare', { key: 'k', parent: '', labels: { big: 'x'.repeat(cap + 1024) } }));
      assert.equal(over.code, status.RESOURCE_EXHAUSTED, `over the cap: ${over.code} ${over.details}`);
      const under = await grpcFailure(c.call('Prepare', { key: 'k', parent: '', labels: { big: 'x'.repeat(cap - 4096) } }));
      assert.equal(under.code, status.INVALID_ARGUMENT, `under the cap the snapshotter itself answers: ${under.details}`);
      assert.match(under.details, /4096/);
      assert.deepEqual(await c.list(), [], 'nothing was made, and the server still answers');
    } finally {
      c.close();
    }
  });

  await t.test('SETTINGS advertise maxConcurrentStreams; 60 calls at once on one connection all complete', async () => {
    const r = await h2(sock);
    assert.notEqual(r, 'closed');
    if (r === 'closed') return;
    assert.equal(r.settings.maxConcurrentStreams, limits.maxConcurrentStreams);
    r.session.close();
    const c = new SnapshotsClient(sock);
    try {
      const calls = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => c.call('Stat', { key: `missing-${i}` })));
      for (const [i, s] of calls.entries()) {
        assert.equal(s.status, 'rejected');
        const e = (s as PromiseRejectedResult).reason as { code: number; details: string };
        assert.equal(e.code, status.NOT_FOUND, `call ${i}: ${e.details}`);
        assert.match(e.details, new RegExp(`missing-${i}\\b`), `call ${i} got its own answer`);
      }
    } finally {
      c.close();
    }
  });

  await t.test('maxConnections: one more connection is closed at once; a freed slot is served again', async () => {
    for (let i = 0; i < 50 && server.connections() > 0; i++) await new Promise((r) => setTimeout(r, 100)); // earlier clients closing
    assert.equal(server.connections(), 0, 'earlier connections are gone');
    const held = await Promise.all([h2(sock), h2(sock), h2(sock)]);
    for (const h of held) assert.notEqual(h, 'closed', 'three connections are served');
    assert.equal(server.connections(), 3);
    assert.equal(await h2(sock), 'closed', 'the fourth is closed by the server');
    assert.ok(logged.some((m) => /3 connections already open/.test(m)), `the refusal is logged: ${JSON.stringify(logged)}`);
    const first = held[0] as { session: http2.ClientHttp2Session };
    first.session.close();
    for (let i = 0; i < 50 && server.connections() > 2; i++) await new Promise((r) => setTimeout(r, 100));
    const again = new SnapshotsClient(sock);
    try {
      assert.deepEqual(await again.list(), [], 'a new client is served once a slot is free');
    } finally {
      again.close();
      for (const h of held.slice(1)) (h as { session: http2.ClientHttp2Session }).session.close();
    }
  });
});

test('thinsim snapshotter --max-connections: a bad value is refused before anything opens', () => {
  const d = tmpdir('thinsim-grpccaps-');
  try {
    const r = thinsim(['snapshotter', d.file('nopool'), '--address', path.join(d.path, 's.sock'), '--max-connections', '0']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--max-connections 0 is out of range.*\[E_RANGE\]/);
  } finally {
    d.cleanup();
  }
});

/**
 * Per-client memory of the snapshotter's gRPC server: clients that call List and never
 * read a byte of the answer, on every connection and stream the caps allow (16 x 8),
 * over 40 snapshots carrying 60 KB of labels each (2.4 MB per answer). Before the List
 * caps (src/containerd/list-stream.ts) the server buffered every answer whole: 128 x 2.4
 * MB. Now it holds about one batch per stream (BATCH_BYTES): the test asserts the
 * server's buffers (process.memoryUsage().arrayBuffers, where serialized replies live)
 * grow by less than 96 MiB, and that a well-behaved client still lists every snapshot,
 * with its labels, while the stalled ones hang on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { ThinSnapshotter, startSnapshotServer } from '../../src/containerd';
import { DEFAULT_SERVER_LIMITS } from '../../src/containerd/server';
import { tmpdir } from '../helpers/oracle';
import { createPool, MiB, SnapshotsClient } from '../containerd/helpers';

const VIEWS = 40;

/** 15 labels of 4,000 bytes (containerd's cap per label is 4,096 with its key): 60 KB per snapshot. */
function bigLabels(): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < 15; i++) labels[`l${i}`] = String.fromCharCode(97 + i).repeat(4000);
  return labels;
}

/** A base snapshot committed as `c`, and `n` views of it carrying `labels`. */
async function viewsWithLabels(c: SnapshotsClient, n: number, labels: Record<string, string>): Promise<void> {
  await c.call('Prepare', { key: 'base', parent: '' });
  await c.call('Commit', { name: 'c', key: 'base' });
  for (let i = 0; i < n; i++) await c.call('View', { key: `v${i}`, parent: 'c', labels });
}

test('snapshotter gRPC: List clients that never read cannot make the server buffer their answers', { timeout: 300_000 }, async (t) => {
  const d = tmpdir('thinsim-grpc-noread-');
  const pool = await createPool(d.file('pool'), 512 * MiB);
  const snap = await ThinSnapshotter.open(pool, { baseSize: 32 * MiB });
  const sock = d.file('s.sock');
  const logged: string[] = [];
  const server = await startSnapshotServer(snap, sock, { log: (m) => logged.push(m) });
  const sessions: http2.ClientHttp2Session[] = [];
  const c = new SnapshotsClient(sock);
  t.after(async () => {
    for (const s of sessions) s.destroy();
    c.close();
    await server.stop();
    await snap.close();
    d.cleanup();
  });

  const labels = bigLabels();
  await viewsWithLabels(c, VIEWS, labels);

  const before = process.memoryUsage().arrayBuffers;
  // Every connection the cap allows (one is the good client), every stream on each: List, never read.
  const frame = Buffer.alloc(5); // an empty ListSnapshotsRequest in gRPC's framing
  let streams = 0;
  for (let k = 0; k < DEFAULT_SERVER_LIMITS.maxConnections - 1; k++) {
    const s = http2.connect('http://localhost', { createConnection: () => net.connect(sock) });
    s.on('error', () => undefined); // torn down at the end
    sessions.push(s);
    for (let j = 0; j < DEFAULT_SERVER_LIMITS.maxConcurrentStreams; j++) {
      const st = s.request({ ':method': 'POST', ':path': '/containerd.services.snapshots.v1.Snapshots/List', 'content-type': 'application/grpc', te: 'trailers' });
      st.on('error', () => undefined);
      st.end(frame);
      st.pause(); // never read: HTTP/2 flow control stops the server once the window is full
      streams++;
    }
  }
  let peak = 0;
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 200));
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  }
  t.diagnostic(`${streams} stalled List streams over ${VIEWS} snapshots of 60 KB labels: server buffers grew by at most ${(peak / MiB).toFixed(1)} MiB`);
  assert.ok(peak < 96 * MiB, `the server's buffers grew by ${(peak / MiB).toFixed(1)} MiB (answers are ${(VIEWS * 60_000 / MiB).toFixed(1)} MiB each, ${streams} streams)`);

  const all = await c.list();
  assert.equal(all.length, VIEWS + 1, 'the good client lists every snapshot');
  for (const v of all.filter((x) => x.name.startsWith('v'))) assert.deepEqual(v.labels, labels, `${v.name} with its labels`);
  assert.equal(server.connections(), DEFAULT_SERVER_LIMITS.maxConnections, 'the stalled connections are still open');
});

test('snapshotter gRPC: a List whose client takes nothing for listStallMs is dropped with RESOURCE_EXHAUSTED', { timeout: 120_000 }, async (t) => {
  const d = tmpdir('thinsim-grpc-stall-');
  const pool = await createPool(d.file('pool'), 256 * MiB);
  const snap = await ThinSnapshotter.open(pool, { baseSize: 32 * MiB });
  const sock = d.file('s.sock');
  const server = await startSnapshotServer(snap, sock, { limits: { listStallMs: 1000 } });
  const c = new SnapshotsClient(sock);
  const s = http2.connect('http://localhost', { createConnection: () => net.connect(sock) });
  s.on('error', () => undefined);
  t.after(async () => {
    s.destroy();
    c.close();
    await server.stop();
    await snap.close();
    d.cleanup();
  });
  await viewsWithLabels(c, 12, bigLabels());
  const st = s.request({ ':method': 'POST', ':path': '/containerd.services.snapshots.v1.Snapshots/List', 'content-type': 'application/grpc', te: 'trailers' });
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => st.once('trailers', resolve));
  let bytes = 0;
  st.on('data', (b: Buffer) => { bytes += b.length; });
  st.end(Buffer.alloc(5));
  st.pause();
  await new Promise((r) => setTimeout(r, 3000)); // past listStallMs with nothing read
  st.resume();
  const tr = await trailers;
  assert.equal(tr['grpc-status'], '8', `RESOURCE_EXHAUSTED (${JSON.stringify(tr)})`);
  assert.match(decodeURIComponent(String(tr['grpc-message'])), /E_STALLED: the client took no List reply for 1000 ms/);
  assert.ok(bytes < 12 * 60_000, `only part of the answer was sent (${bytes} bytes)`);
  assert.equal((await c.list()).length, 13, 'the server goes on listing for others');
});

/**
 * One connection's bug stays in that connection: a Transmission whose request handling
 * throws (an injected fault in the export it serves) closes its own socket with a log
 * line, and the process (the server) goes on serving another connection. And an address
 * that is already taken (TCP port, live unix socket) is E_ADDR_IN_USE, not E_POOL_BUSY.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Target } from '../../src/nbd/commands';
import { NbdServer } from '../../src/nbd/server';
import { DEFAULT_LIMITS } from '../../src/nbd/session';
import { Transmission } from '../../src/nbd/transmission';
import { Pool } from '../../src/pool/pool';
import { tmpdir } from '../helpers/oracle';
import { readReply, requestBytes, Wire } from './helpers';

const READ = 0;

function listen(server: net.Server, where: string | number): Promise<void> {
  return new Promise((resolve) => (typeof where === 'string' ? server.listen(where, resolve) : server.listen(where, '127.0.0.1', resolve)));
}

test('an exception in one connection\'s handling closes that connection with a log line; another connection is still served', async (t) => {
  const d = tmpdir('thinsim-conn-');
  t.after(() => d.cleanup());
  const pool = Pool.create(d.file('pool'), { dataSize: 4 << 20, metadataSize: 4 << 20 });
  t.after(() => pool.close());
  await pool.createThin(1, 1 << 20);
  const logs: string[] = [];
  const ctx = { limits: DEFAULT_LIMITS, log: (m: string) => logs.push(m) };
  const good: Target = { pool, exp: { name: '1', id: 1, size: 1 << 20, readOnly: false, description: '' } as Target['exp'], structured: false, allocationContext: undefined };
  const broken = {
    pool, structured: false, allocationContext: undefined,
    get exp(): Target['exp'] { throw new Error('injected bug in the export lookup'); },
  } as Target;
  const done: Promise<void>[] = [];
  let n = 0;
  const server = net.createServer((sock) => {
    sock.pause(); // as the handshake hands it over
    const target = n++ === 0 ? broken : good;
    done.push(new Transmission(sock, ctx, target, `connection ${n}`, { chunks: [], ended: false }).done);
  });
  const sockPath = path.join(d.path, 'tx.sock');
  await listen(server, sockPath);
  t.after(() => server.close());

  const bad = await Wire.connect(sockPath);
  bad.write(requestBytes(READ, 0, 1n, 0, 512));
  assert.ok(await bad.closedWithin(5000), 'the connection with the bug is closed');
  assert.ok(logs.some((l) => /connection 1: internal error, closing this connection .*injected bug/s.test(l)), `logged: ${logs.join('\n')}`);
  await done[0];

  const ok = await Wire.connect(sockPath);
  ok.write(requestBytes(READ, 0, 2n, 0, 512));
  const r = await readReply(ok, () => 512);
  assert.equal(r.error, 0, 'another connection is served');
  assert.equal(r.data!.length, 512);
  ok.end();
  await done[1];
});

test('listening on a taken TCP port or a live unix socket is E_ADDR_IN_USE', async (t) => {
  const d = tmpdir('thinsim-conn-');
  t.after(() => d.cleanup());
  const pool = Pool.create(d.file('pool'), { dataSize: 4 << 20, metadataSize: 4 << 20 });
  t.after(() => pool.close());
  const taken = net.createServer();
  await listen(taken, 0);
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const e1 = await NbdServer.start(pool, { listen: `127.0.0.1:${port}` }).then(() => undefined, (e) => e);
  assert.equal(e1?.code, 'E_ADDR_IN_USE', String(e1));
  assert.match(e1.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  const sockPath = path.join(d.path, 'other.sock');
  const other = net.createServer();
  await listen(other, sockPath);
  t.after(() => other.close());
  const e2 = await NbdServer.start(pool, { socket: sockPath }).then(() => undefined, (e) => e);
  assert.equal(e2?.code, 'E_ADDR_IN_USE', String(e2));
});

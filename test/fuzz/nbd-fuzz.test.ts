/**
 * NBD under random byte streams (fast-check, fixed seeds; THINSIM_FUZZ_SEED overrides):
 * - the pure parsers (protocol.ts) on random bytes: a value or ThinError E_PARSE, never
 *   another exception;
 * - a `thinsim serve --tls on` child: random bytes as the whole handshake, random option
 *   streams after the greeting (well-formed headers with random options and data, and
 *   raw bytes), random bytes after STARTTLS's acknowledgement (where the TLS handshake
 *   belongs), and random request streams in transmission (valid magic, random types,
 *   flags, offsets, lengths, payload, then raw bytes). After each stream a good client
 *   still reads back what it wrote, and the server process is alive;
 * - a TLS client that asks for 1.5 GiB of reads and never reads a reply: the server's RSS
 *   stays bounded (the plaintext case is in test/nbd/hostile.test.ts).
 * At the end the server stops with exit 0 and `thinsim check` passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { isThinError } from '../../src/errors';
import * as P from '../../src/nbd/protocol';
import { tmpdir } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { call, connect, have, hello, makePool, MiB, optionBytes, randomBytes, readOptReply, requestBytes, serve, Wire } from '../nbd/helpers';
import { clientTls, pskFile } from '../nbd/tls-helpers';

const SEED = Number(process.env.THINSIM_FUZZ_SEED ?? 777);

test('protocol parsers on random bytes: a value or E_PARSE', () => {
  const parsers: Array<[string, (b: Buffer) => unknown]> = [
    ['clientFlags', P.parseClientFlags], ['optionHeader', P.parseOptionHeader], ['infoRequest', P.parseInfoRequest],
    ['metaContextRequest', P.parseMetaContextRequest], ['exportName', P.parseExportName], ['request', P.parseRequest],
  ];
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(parsers.length - 1), (bytes, i) => {
    const [name, parse] = parsers[i];
    try {
      parse(Buffer.from(bytes));
    } catch (e) {
      if (!isThinError(e, 'E_PARSE')) throw new Error(`${name}: ${(e as Error)?.stack ?? e}`);
    }
  }), { seed: SEED, numRuns: 5000 });
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Send `stream` and give the server a moment; the connection may be closed on us. */
async function spray(w: Wire, stream: Buffer, ms = 30): Promise<void> {
  if (!w.closed) w.sock.write(stream, () => undefined);
  await new Promise((r) => setTimeout(r, ms));
  w.end();
}

test('random byte streams at every phase of a --tls on server; good clients keep working', { skip: have('psktool') ? false : 'psktool missing (apt-get install gnutls-bin)' }, async (t) => {
  const d = tmpdir('thinsim-nbdfuzz-');
  const pool = makePool(d.file('pool'), { 1: '16M' });
  const keys = await pskFile(d.file('keys.psk'), 'alice');
  const key = Buffer.from(fs.readFileSync(keys, 'utf8').trim().split(':')[1], 'hex');
  const s = await serve(pool, d.path, ['--tls', 'on', '--tls-psk', keys]);
  const data = randomBytes(64 * 1024, 5);
  let alive = 0;
  const healthy = async (what: string) => {
    assert.equal(s.child.exitCode, null, `${what}: the server is still running`);
    const c = await connect(s.socket, '1');
    try {
      const off = (alive++ % 64) * 65536;
      assert.equal((await call(c, P.Cmd.WRITE, off, data.length, { payload: data })).error, 0, `${what}: write`);
      const r = await call(c, P.Cmd.READ, off, data.length);
      assert.ok(r.data?.equals(data), `${what}: read back`);
    } finally {
      c.w.end();
    }
  };
  try {
    const raw = fc.uint8Array({ minLength: 1, maxLength: 2048 }).map((a) => Buffer.from(a));
    const option = fc.record({ opt: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.nat()), data: fc.uint8Array({ maxLength: 64 }) })
      .map(({ opt, data: b }) => optionBytes(opt >>> 0, Buffer.from(b)));
    const request = fc.record({
      type: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff })), flags: fc.integer({ min: 0, max: 0xffff }),
      offset: fc.oneof(fc.integer({ min: 0, max: 20 * MiB }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
      length: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.nat()), payload: fc.uint8Array({ maxLength: 512 }),
    }).map((q) => requestBytes(q.type, q.flags, 1n, q.offset, q.length >>> 0, Buffer.from(q.payload)));

    await t.test('raw bytes instead of the client flags and options', async () => {
      for (const bytes of fc.sample(raw, { seed: SEED, numRuns: 40 })) {
        const w = await Wire.connect(s.socket);
        await w.read(18);
        await spray(w, bytes);
      }
      await healthy('raw handshake');
    });
    await t.test('random options, then raw bytes', async () => {
      for (const [opts, tail] of fc.sample(fc.tuple(fc.array(option, { maxLength: 8 }), raw), { seed: SEED + 1, numRuns: 40 })) {
        const w = await Wire.connect(s.socket);
        await hello(w);
        await spray(w, Buffer.concat([...opts, tail]));
      }
      await healthy('random options');
    });
    await t.test('random bytes where the TLS handshake belongs, and garbage inside TLS', async () => {
      for (const [i, bytes] of fc.sample(raw, { seed: SEED + 2, numRuns: 30 }).entries()) {
        const w = await Wire.connect(s.socket);
        await hello(w);
        w.write(optionBytes(P.Opt.STARTTLS));
        assert.equal((await readOptReply(w)).type, P.Rep.ACK);
        if (i % 3 === 0) {
          const tw = await clientTls(w, 'alice', key);
          await spray(tw, bytes);
        } else {
          await spray(w, bytes);
        }
      }
      await healthy('after STARTTLS');
    });
    await t.test('random request streams in transmission', async () => {
      for (const [reqs, tail] of fc.sample(fc.tuple(fc.array(request, { minLength: 1, maxLength: 16 }), fc.option(raw)), { seed: SEED + 3, numRuns: 40 })) {
        const c = await connect(s.socket, '1', { structured: reqs.length % 2 === 0 });
        await spray(c.w, Buffer.concat([...reqs, ...(tail ? [tail] : [])]), 50);
      }
      await healthy('random requests');
    });
    await t.test('a TLS client that asks for 1.5 GiB and never reads: server memory stays bounded', async () => {
      const before = rssBytes(s.child.pid!);
      const w = await Wire.connect(s.socket);
      await hello(w);
      w.write(optionBytes(P.Opt.STARTTLS));
      assert.equal((await readOptReply(w)).type, P.Rep.ACK);
      const tw = await clientTls(w, 'alice', key);
      const name = Buffer.from('1');
      const go = Buffer.alloc(6 + name.length);
      go.writeUInt32BE(name.length, 0);
      name.copy(go, 4);
      tw.write(optionBytes(P.Opt.GO, go));
      for (let r = await readOptReply(tw); r.type !== P.Rep.ACK; r = await readOptReply(tw)) assert.ok(r.type < 0x80000000);
      tw.sock.pause();
      tw.sock.removeAllListeners('data');
      let peak = before;
      for (let i = 0; i < 1500; i++) {
        tw.sock.write(requestBytes(P.Cmd.READ, 0, BigInt(i), (i % 16) * MiB, MiB));
        if (i % 100 === 0) {
          await new Promise((r) => setTimeout(r, 20));
          peak = Math.max(peak, rssBytes(s.child.pid!));
        }
      }
      await new Promise((r) => setTimeout(r, 1000));
      peak = Math.max(peak, rssBytes(s.child.pid!));
      t.diagnostic(`server RSS ${(before / MiB).toFixed(0)} -> ${(peak / MiB).toFixed(0)} MiB`);
      assert.ok(peak - before < 400 * MiB, `server RSS grew by ${((peak - before) / MiB).toFixed(0)} MiB`);
      tw.sock.destroy();
      w.sock.destroy();
      await healthy('after the non-reading TLS client');
    });
  } finally {
    const r = await s.stop();
    assert.equal(r.code, 0, `serve exits 0: ${r.stderr.slice(-2000)}`);
    assert.doesNotMatch(r.stderr, /unexpected failure/, 'no session ended in an unexpected failure');
    thinsimOk(['check', pool]);
    d.cleanup();
  }
});

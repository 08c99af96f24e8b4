/**
 * `thinsim serve --tls` with real clients (libnbd's nbdinfo, qemu-img) and keys made by
 * the real tools (psktool, certtool from gnutls-bin):
 * - PSK under `--tls require` on a unix socket: nbdinfo with nbds+unix://...?tls-psk-file=
 *   (user from the URI, and from tls-username=), qemu-img with tls-creds-psk writing an
 *   image and comparing it over TLS; the device read back after the server stops is the
 *   image (cmp);
 * - x509 under `--tls require` on TCP: qemu-img with tls-creds-x509 and nbdinfo with
 *   tls-certificates=; a client trusting another CA is refused;
 * - refusals: a plaintext nbdinfo, wrong keys, an unknown user; the raw client sees
 *   NBD_REP_ERR_TLS_REQD for GO and LIST and a closed connection after EXPORT_NAME; the
 *   server keeps serving good clients afterwards;
 * - `--tls on`: plaintext and TLS clients both work; a second STARTTLS is ERR_INVALID and
 *   options chosen before STARTTLS are forgotten (structured replies must be asked again);
 * - bad options exit 2 naming what is wrong; non-loopback without TLS warns, with TLS not;
 *   the unix socket is mode 0600.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir } from '../helpers/oracle';
import { thinsim, thinsimOk } from '../helpers/cli';
import { have, hello, makePool, MiB, optionBytes, randomBytes, readOptReply, run, runOk, serve, Wire } from './helpers';
import { certificates, clientTls, pskFile } from './tls-helpers';

const OPT = { EXPORT_NAME: 1, LIST: 3, STARTTLS: 5, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9 };
const REP = { ACK: 1, ERR_INVALID: 0x80000003, ERR_TLS_REQD: 0x80000005, ERR_UNSUP: 0x80000001 };
const tools = ['nbdinfo', 'qemu-img', 'psktool', 'certtool'];
const missing = tools.filter((t) => !have(t));
const skip = missing.length ? `needs ${missing.join(', ')} (apt-get install libnbd-bin qemu-utils gnutls-bin)` : false;

function goData(name: string): Buffer {
  const b = Buffer.alloc(6 + name.length);
  b.writeUInt32BE(name.length, 0);
  b.write(name, 4);
  b.writeUInt16BE(0, 4 + name.length);
  return b;
}

test('PSK, --tls require: nbdinfo and qemu-img over TLS; plaintext, wrong keys and unknown users refused', { skip }, async () => {
  const d = tmpdir('thinsim-tls-');
  try {
    const pool = makePool(d.file('pool'), { 1: '16M' });
    const keys = await pskFile(d.file('keys.psk'), 'alice');
    const wrong = await pskFile(d.file('wrong.psk'), 'alice');
    const stranger = await pskFile(d.file('bob.psk'), 'bob');
    const src = d.file('src.raw');
    const s = await serve(pool, d.path, ['--tls', 'require', '--tls-psk', keys]);
    try {
      assert.equal(fs.statSync(s.socket).mode & 0o777, 0o600, 'the unix socket is 0600');
      assert.match(s.printed, /^nbds\+unix:\/\/\/1\?socket=/, 'require prints an nbds URI');
      const tlsUri = (user: string, file: string, viaQuery: boolean) => viaQuery
        ? `nbds+unix:///1?socket=${s.socket}&tls-psk-file=${file}&tls-username=${user}`
        : `nbds+unix://${user}@/1?socket=${s.socket}&tls-psk-file=${file}`;
      // libnbd 1.14 takes the PSK user from the URI's user part; newer ones also from
      // tls-username=. LOGNAME is what 1.14 falls back to; it names the same user here.
      for (const viaQuery of [false, true]) {
        const out = await runOk('env', ['LOGNAME=alice', 'nbdinfo', '--size', tlsUri('alice', keys, viaQuery)], 30_000);
        assert.equal(out.trim(), String(16 * MiB));
      }
      // qemu-img with tls-creds-psk: write an image over TLS and compare it over TLS.
      const pskDir = d.file('qemu-psk');
      fs.mkdirSync(pskDir);
      fs.copyFileSync(keys, path.join(pskDir, 'keys.psk'));
      const obj = `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=alice`;
      const nbd = `driver=nbd,server.type=unix,server.path=${s.socket},export=1,tls-creds=tls0`;
      const img = randomBytes(4 * MiB, 7);
      fs.writeFileSync(src, Buffer.concat([img, Buffer.alloc(12 * MiB)]));
      await runOk('qemu-img', ['convert', '--object', obj, '-n', '-f', 'raw', '--target-image-opts', src, nbd], 60_000);
      const cmp = await runOk('qemu-img', ['compare', '--object', obj, '--image-opts', `driver=file,filename=${src}`, nbd], 60_000);
      assert.match(cmp, /Images are identical/);

      // Refusals.
      const plain = await run('nbdinfo', ['--size', `nbd+unix:///1?socket=${s.socket}`], 30_000);
      assert.notEqual(plain.status, 0, 'a plaintext client is refused under --tls require');
      const bad = await run('nbdinfo', ['--size', tlsUri('alice', wrong, false)], 30_000);
      assert.notEqual(bad.status, 0, 'a wrong key is refused');
      assert.match(bad.stderr, /TLS|handshake|alert/i);
      const unknown = await run('nbdinfo', ['--size', tlsUri('bob', stranger, false)], 30_000);
      assert.notEqual(unknown.status, 0, 'an unknown user is refused');
      const badQemu = await run('qemu-img', ['info', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=bob`, '--image-opts', nbd], 30_000);
      assert.notEqual(badQemu.status, 0, 'qemu-img with a user the server does not know is refused');

      // The raw client: options before STARTTLS get ERR_TLS_REQD; EXPORT_NAME closes.
      const w = await Wire.connect(s.socket);
      await hello(w);
      for (const opt of [OPT.LIST, OPT.GO, OPT.STRUCTURED_REPLY]) {
        w.write(optionBytes(opt, opt === OPT.GO ? goData('1') : undefined));
        const r = await readOptReply(w);
        assert.equal(r.type, REP.ERR_TLS_REQD, `option ${opt} before STARTTLS`);
      }
      w.write(optionBytes(OPT.EXPORT_NAME, Buffer.from('1')));
      assert.ok(await w.closedWithin(5000), 'EXPORT_NAME without TLS closes the connection');

      // Still serving after all that.
      const again = await runOk('nbdinfo', ['--size', tlsUri('alice', keys, false)], 30_000);
      assert.equal(again.trim(), String(16 * MiB));
    } finally {
      const r = await s.stop();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /TLS handshake failed/, 'a refused handshake is logged');
    }
    const out = d.file('out.raw');
    thinsimOk(['thin', 'export', pool, '1', out]);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(src)), 'what qemu-img wrote over TLS is on the device');
    thinsimOk(['check', pool]);
  } finally {
    d.cleanup();
  }
});

test('x509, --tls require on TCP: qemu-img tls-creds-x509 and nbdinfo tls-certificates; another CA refused', { skip }, async () => {
  const d = tmpdir('thinsim-tls-');
  try {
    const pool = makePool(d.file('pool'), { 1: '16M' });
    const certs = await certificates(d.file('pki'));
    const other = await certificates(d.file('other'), 'some other CA');
    const s = await serve(pool, d.path, ['--listen', '127.0.0.1:0', '--tls', 'require', '--tls-certificates', certs.server]);
    try {
      const port = /:(\d+)\//.exec(s.printed)![1];
      assert.match(s.printed, /^nbds:\/\/127\.0\.0\.1:\d+\/1$/);
      const nbd = `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=1,tls-creds=tls0`;
      const info = await runOk('qemu-img', ['info', '--output=json', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${certs.client}`, '--image-opts', nbd], 30_000);
      assert.equal(JSON.parse(info)['virtual-size'], 16 * MiB);
      const size = await runOk('nbdinfo', ['--size', `nbds://127.0.0.1:${port}/1?tls-certificates=${certs.client}`], 30_000);
      assert.equal(size.trim(), String(16 * MiB));
      const stranger = await run('qemu-img', ['info', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${other.client}`, '--image-opts', nbd], 30_000);
      assert.notEqual(stranger.status, 0, 'a client that trusts another CA refuses the server');
      const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/1`], 30_000);
      assert.notEqual(plain.status, 0, 'plaintext refused');
    } finally {
      const r = await s.stop();
      assert.equal(r.code, 0, r.stderr);
    }
  } finally {
    d.cleanup();
  }
});

test('--tls on: plaintext and TLS both served; a second STARTTLS is invalid; options before STARTTLS are forgotten', { skip }, async () => {
  const d = tmpdir('thinsim-tls-');
  try {
    const pool = makePool(d.file('pool'), { 1: '16M' });
    const keys = await pskFile(d.file('keys.psk'), 'alice');
    const key = Buffer.from(fs.readFileSync(keys, 'utf8').trim().split(':')[1], 'hex');
    const s = await serve(pool, d.path, ['--tls', 'on', '--tls-psk', keys]);
    try {
      assert.match(s.printed, /^nbd\+unix:/);
      assert.equal((await runOk('nbdinfo', ['--size', `nbd+unix:///1?socket=${s.socket}`], 30_000)).trim(), String(16 * MiB));
      assert.equal((await runOk('nbdinfo', ['--size', `nbds+unix://alice@/1?socket=${s.socket}&tls-psk-file=${keys}`], 30_000)).trim(), String(16 * MiB));

      const w = await Wire.connect(s.socket);
      await hello(w);
      w.write(optionBytes(OPT.STRUCTURED_REPLY));
      assert.equal((await readOptReply(w)).type, REP.ACK);
      w.write(optionBytes(OPT.STARTTLS, Buffer.from('x')));
      assert.equal((await readOptReply(w)).type, REP.ERR_INVALID, 'STARTTLS with data');
      w.write(optionBytes(OPT.STARTTLS));
      assert.equal((await readOptReply(w)).type, REP.ACK);
      const t = await clientTls(w, 'alice', key);
      t.write(optionBytes(OPT.STARTTLS));
      assert.equal((await readOptReply(t)).type, REP.ERR_INVALID, 'a second STARTTLS');
      // Structured replies were chosen before TLS: meta contexts need them again.
      t.write(optionBytes(OPT.LIST_META_CONTEXT, Buffer.from([0, 0, 0, 1, 0x31, 0, 0, 0, 0])));
      assert.equal((await readOptReply(t)).type, REP.ERR_INVALID, 'structured replies forgotten after STARTTLS');
      t.write(optionBytes(OPT.GO, goData('1')));
      let r = await readOptReply(t);
      while (r.type !== REP.ACK) { assert.ok(r.type < 0x80000000, `GO over TLS: reply ${r.type.toString(16)}`); r = await readOptReply(t); }
      t.end();

      // Bytes pipelined after STARTTLS, before its ACK, end the connection.
      const p = await Wire.connect(s.socket);
      await hello(p);
      p.write(Buffer.concat([optionBytes(OPT.STARTTLS), Buffer.from('\x16\x03\x01 early bytes')]));
      assert.ok(await p.closedWithin(5000), 'early bytes after STARTTLS close the connection');
    } finally {
      const r = await s.stop();
      assert.equal(r.code, 0, r.stderr);
    }
  } finally {
    d.cleanup();
  }
});

test('TLS options: bad input exits 2 naming it; warning off loopback only without TLS; STARTTLS unsupported when off', { skip }, async () => {
  const d = tmpdir('thinsim-tls-');
  try {
    const pool = makePool(d.file('pool'), { 1: '16M' });
    fs.writeFileSync(d.file('bad.psk'), 'alice:nothex\n');
    const cases: Array<[string[], RegExp]> = [
      [['--tls', 'require'], /needs keys: --tls-psk FILE .* --tls-certificates DIR/],
      [['--tls', 'on', '--tls-psk', d.file('none.psk')], /--tls-psk .*none\.psk: cannot read it.*psktool/],
      [['--tls-psk', d.file('bad.psk')], /line 1 is not "username:hexkey"/],
      [['--tls-certificates', d.path], /cannot read server-cert\.pem/],
      [['--tls', 'off', '--tls-psk', d.file('bad.psk')], /--tls off with --tls-psk/],
    ];
    for (const [extra, msg] of cases) {
      const r = thinsim(['serve', pool, '--socket', d.file('x.sock'), ...extra], { timeoutMs: 30_000 });
      assert.equal(r.status, 2, `${extra.join(' ')}: exit 2\n${r.stderr}`);
      assert.match(r.stderr, msg, extra.join(' '));
    }
    const keys = await pskFile(d.file('keys.psk'), 'alice');
    const open = await serve(pool, d.path, ['--listen', '0.0.0.0:0']);
    const a = await open.stop();
    assert.match(a.stderr, /warning: listening on 0\.0\.0\.0, which is not a loopback address, without TLS/);
    const safe = await serve(pool, d.path, ['--listen', '0.0.0.0:0', '--tls', 'require', '--tls-psk', keys]);
    const b = await safe.stop();
    assert.doesNotMatch(b.stderr, /not a loopback address/);

    const off = await serve(pool, d.path);
    try {
      const raw = await Wire.connect(off.socket);
      await hello(raw);
      raw.write(optionBytes(OPT.STARTTLS));
      assert.equal((await readOptReply(raw)).type, REP.ERR_UNSUP, 'STARTTLS without --tls');
      raw.end();
    } finally {
      await off.stop();
    }
  } finally {
    d.cleanup();
  }
});

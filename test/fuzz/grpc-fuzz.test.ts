/**
 * `thinsim snapshotter` (the CLI, a child process) on a temporary pool under random gRPC
 * requests (fast-check, fixed seed; THINSIM_FUZZ_SEED overrides, THINSIM_FUZZ_RUNS scales):
 * - every RPC with generated fields: keys, names and parents from a small set (so Prepare,
 *   Commit, children and Remove meet) mixed with `/`, `..`, NUL and other control
 *   characters, unicode, 64 KiB strings; random labels maps (empty keys, 5 KB values,
 *   `__proto__`, `constructor`); random List filters (a grammar of selectors plus raw
 *   strings); random Update field paths; a few requests sent at once;
 * - raw bytes as the request of every method, through a client with identity serializers
 *   (makeGenericClientConstructor): random bytes, and the encoding of a valid request cut
 *   or with a byte flipped.
 * Every reply is OK or NotFound, AlreadyExists, FailedPrecondition, InvalidArgument
 * (Unimplemented only for View without a parent, which thinsim does not make), never
 * Unknown or Internal; the service never dies. Afterwards it stops with exit 0, and the
 * pool passes `thinsim check` and both thin_checks; every snapshot record names a layer,
 * every layer's device record names a device the pool has, and the reverse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as path from 'node:path';
import fc from 'fast-check';
import { SnapshotRecords } from '../../src/containerd/records';
import { DockerRecords } from '../../src/layers/records';
import { Pool } from '../../src/pool/pool';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { thinsimOk } from '../helpers/cli';
import { MiB, SnapshotsClient, attachMissing, createPool, metadataFile } from '../containerd/helpers';
import { startSnapshotterProcess } from '../containerd/snapshotter-process';

const SEED = Number(process.env.THINSIM_FUZZ_SEED ?? 1919);
const RUNS = Number(process.env.THINSIM_FUZZ_RUNS ?? 1);
const SERVICE = '/containerd.services.snapshots.v1.Snapshots/';
const METHODS = ['Prepare', 'View', 'Mounts', 'Commit', 'Remove', 'Stat', 'Update', 'List', 'Usage', 'Cleanup'] as const;
const ALLOWED = new Set([grpc.status.OK, grpc.status.NOT_FOUND, grpc.status.ALREADY_EXISTS, grpc.status.FAILED_PRECONDITION, grpc.status.INVALID_ARGUMENT]);

const weird = fc.oneof(
  fc.constantFrom('', '/', '..', '../..', 'a/../../etc/passwd', '/abs', '.', 'a\0b', '\0', 'tab\there', ' lead', 'é/ü/中', 'default/1/../x', '\u202e', '\x7f'),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom('k'.repeat(256), 'k'.repeat(255), 'x'.repeat(64 * 1024)),
);
/** Names that meet: most requests use these, so snapshots get made, committed, used as parents. */
const known = fc.constantFrom('k1', 'k2', 'k3', 'ns/1/a', 'ns/1/../b', 'C1', 'C2', 'C3');
const key = fc.oneof({ weight: 4, arbitrary: known }, { weight: 1, arbitrary: weird });
const parent = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('C1', 'C2', 'C3', 'BASE') }, { weight: 1, arbitrary: fc.constant('') }, { weight: 1, arbitrary: key });
const labels = fc.oneof(
  { weight: 3, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom('a', 'containerd.io/gc.root', '', '__proto__', 'constructor', 'toString', 'x.y/z'), fc.string({ maxLength: 10 })), fc.string({ maxLength: 20 }), { maxKeys: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom({ big: 'v'.repeat(5000) }, Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`l${i}`, 'x']))) },
);
const fieldPath = fc.oneof(fc.constantFrom('labels', 'labels.a', 'labels.constructor', 'labels.__proto__', 'labels.toString', 'labels.', 'name', 'parent', 'kind', '', 'labels.hasOwnProperty'), fc.string({ maxLength: 20 }));
const selector = fc.tuple(
  fc.constantFrom('name', 'parent', 'kind', 'labels.a', 'labels."containerd.io/gc.root"', 'labels', 'x', '"unterminated', ''),
  fc.constantFrom('', '==', '!=', '~='),
  fc.constantFrom('k1', 'active', '"q"', '^k', '(', '[a-', '*', '"a\\"b"', '', 'a,b'),
).map(([f, op, v]) => (op ? f + op + v : f));
const filter = fc.oneof(fc.array(selector, { maxLength: 3 }).map((s) => s.join(',')), fc.string({ maxLength: 20 }));

type Req = { method: (typeof METHODS)[number]; req: object };
const request: fc.Arbitrary<Req> = fc.oneof(
  fc.record({ key, parent, labels }).map((r) => ({ method: 'Prepare' as const, req: r })),
  fc.record({ key, parent, labels }).map((r) => ({ method: 'View' as const, req: r })),
  fc.record({ name: fc.oneof({ weight: 3, arbitrary: fc.constantFrom('C1', 'C2', 'C3') }, { weight: 1, arbitrary: key }), key, labels }).map((r) => ({ method: 'Commit' as const, req: r })),
  fc.record({ key }).map((r) => ({ method: 'Remove' as const, req: r })),
  fc.record({ key }).map((r) => ({ method: 'Mounts' as const, req: r })),
  fc.record({ key }).map((r) => ({ method: 'Stat' as const, req: r })),
  fc.record({ key }).map((r) => ({ method: 'Usage' as const, req: r })),
  fc.record({ name: key, labels, paths: fc.array(fieldPath, { maxLength: 3 }) }).map((r) => ({ method: 'Update' as const, req: { info: { name: r.name, labels: r.labels }, update_mask: { paths: r.paths } } })),
  fc.array(filter, { maxLength: 3 }).map((filters) => ({ method: 'List' as const, req: { filters } })),
  fc.constant({ method: 'Cleanup' as const, req: {} }),
);

/** A client that sends bytes as they are (no protobuf encoding) and returns the reply's bytes. */
function rawClient(socket: string): grpc.Client & Record<string, (req: Buffer, cb: (e: grpc.ServiceError | null, v?: Buffer) => void) => void> {
  const id = (b: Buffer) => b;
  const def: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const m of METHODS) {
    def[m] = { path: SERVICE + m, requestStream: false, responseStream: m === 'List', requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id, originalName: m };
  }
  const Ctor = grpc.makeGenericClientConstructor(def, 'Snapshots');
  return new Ctor(`unix:${socket}`, grpc.credentials.createInsecure()) as never;
}

/** Send raw bytes to `method`; the status code of the reply. */
function rawCall(c: ReturnType<typeof rawClient>, method: string, bytes: Buffer): Promise<{ code: grpc.status; details: string }> {
  return new Promise((resolve) => {
    if (method === 'List') {
      const s = (c as unknown as Record<string, (b: Buffer) => grpc.ClientReadableStream<Buffer>>)[method](bytes);
      s.on('data', () => undefined);
      s.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
      s.on('end', () => resolve({ code: grpc.status.OK, details: '' }));
      return;
    }
    c[method](bytes, (e) => resolve(e ? { code: e.code, details: e.details } : { code: grpc.status.OK, details: '' }));
  });
}

test('snapshotter under random gRPC requests: only containerd\'s error codes, the service lives, the pool stays clean', { skip: attachMissing() ?? false, timeout: 900_000 }, async (t) => {
  const dir = tempDir(t, 'thinsim-grpc-fuzz-');
  const pool = await createPool(path.join(dir, 'pool'), 2048 * MiB);
  const proc = await startSnapshotterProcess(pool, path.join(dir, 's.sock'), ['--base-image-size', '32M']);
  const c = new SnapshotsClient(proc.socket);
  const raw = rawClient(proc.socket);
  const seen: Record<string, number> = {};
  const bad: string[] = [];
  const note = (what: string, code: grpc.status, details: string, allowUnimplemented = false) => {
    seen[grpc.status[code]] = (seen[grpc.status[code]] ?? 0) + 1;
    if (!ALLOWED.has(code) && !(allowUnimplemented && code === grpc.status.UNIMPLEMENTED)) bad.push(`${what}: ${grpc.status[code]} ${details.slice(0, 300)}`);
  };
  const send = async (r: Req) => {
    const what = `${r.method} ${JSON.stringify(r.req).slice(0, 200)}`;
    try {
      if (r.method === 'List') await c.list((r.req as { filters: string[] }).filters);
      else await c.call(r.method, r.req);
      note(what, grpc.status.OK, '');
    } catch (e) {
      const err = e as grpc.ServiceError;
      note(what, err.code, err.details ?? String(e), r.method === 'View' && !(r.req as { parent: string }).parent);
    }
  };
  try {
    // A committed base to build on, so that parents exist.
    await c.call('Prepare', { key: 'base-active', parent: '' });
    await c.call('Commit', { name: 'BASE', key: 'base-active' });
    await t.test('typed requests with random fields, one at a time and a few at once', async () => {
      await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 4 }), fc.boolean(), async (reqs, together) => {
        if (together) await Promise.all(reqs.map(send));
        else for (const r of reqs) await send(r);
        assert.equal(proc.child.exitCode, null, `the service died: ${proc.stderr()}`);
        assert.deepEqual(bad, [], 'only containerd\'s error codes');
      }), {
        seed: SEED, numRuns: 200 * RUNS, includeErrorInReport: true,
        // Named cases first: a parent with a child, a committed key, label paths named like Object's members.
        examples: [
          [[{ method: 'Prepare', req: { key: 'e1', parent: 'BASE' } }, { method: 'Commit', req: { name: 'E1', key: 'e1' } }, { method: 'Prepare', req: { key: 'e2', parent: 'E1' } }, { method: 'Remove', req: { key: 'E1' } }], false],
          [[{ method: 'Commit', req: { name: 'E2', key: 'E1' } }, { method: 'Remove', req: { key: 'e2' } }, { method: 'Remove', req: { key: 'E1' } }], false],
          [[{ method: 'Prepare', req: { key: 'e3', parent: 'BASE' } }, ...['labels.constructor', 'labels.__proto__', 'labels.toString', 'labels.hasOwnProperty'].map((p) => ({ method: 'Update' as const, req: { info: { name: 'e3', labels: {} }, update_mask: { paths: [p] } } }))], false],
          [[{ method: 'Update', req: { info: { name: 'e3', labels: { constructor: 'c', __proto__: 'p' } }, update_mask: { paths: ['labels.constructor', 'labels'] } } }, { method: 'Remove', req: { key: 'e3' } }], true],
        ],
      });
      for (const code of ['OK', 'NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'INVALID_ARGUMENT']) assert.ok((seen[code] ?? 0) > 0, `the requests reach ${code}: ${JSON.stringify(seen)}`);
    });
    await t.test('a List filter with a backtracking regular expression answers in time (regression)', async () => {
      // ^(a+)+$ against "aaa...a!" takes exponential time in a backtracking engine; containerd's
      // Go regexp (RE2) is linear, and so must thinsim be: the service runs requests one at a time.
      const name = 'a'.repeat(40) + '!';
      await c.call('Prepare', { key: name, parent: 'BASE' });
      const t0 = performance.now();
      const answered = await Promise.race([c.list(['name~=^(a+)+$']).then((l) => l.length), new Promise<string>((r) => setTimeout(() => r('no answer in 10 s'), 10_000).unref())]);
      assert.equal(answered, 0, `List answered ${answered} after ${(performance.now() - t0).toFixed(0)} ms`);
      const e = await c.list(['name~=(a)\\1']).then(() => undefined, (err: grpc.ServiceError) => err);
      assert.equal(e?.code, grpc.status.INVALID_ARGUMENT, 'a backreference is refused, as RE2 refuses it');
      await c.call('Remove', { key: name });
    });
    await t.test('raw bytes as the request of every method', async () => {
      bad.length = 0; // this part's findings only
      // A valid Prepare encoded by hand (field 2 key, field 3 parent), to cut and flip.
      const valid = Buffer.concat([Buffer.from([0x12, 2]), Buffer.from('k9'), Buffer.from([0x1a, 4]), Buffer.from('BASE')]);
      const bytes = fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        fc.tuple(fc.nat(valid.length), fc.nat(valid.length - 1), fc.nat(255)).map(([cut, at, v]) => { const b = Buffer.from(valid); b[at] = v; return b.subarray(0, Math.max(cut, 1)); }),
        fc.constantFrom(Buffer.from([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0x22, 0x05, 0x0a, 0x01]), Buffer.from([0x0a]), Buffer.from([0x12, 0x02, 0xc3, 0x28])),
      );
      await fc.assert(fc.asyncProperty(fc.constantFrom(...METHODS), bytes, async (method, b) => {
        const r = await rawCall(raw, method, b);
        note(`raw ${method} ${b.toString('hex')}`, r.code, r.details, method === 'View');
        assert.equal(proc.child.exitCode, null, `the service died: ${proc.stderr()}`);
        assert.deepEqual(bad, [], 'only containerd\'s error codes');
      }), { seed: SEED, numRuns: 200 * RUNS, includeErrorInReport: true, examples: [['Prepare', Buffer.from([0])]] }); // seed 1919's first find: INTERNAL
    });
    assert.equal((await c.call('Stat', { key: 'BASE' })).info.name, 'BASE', 'the service still answers');
  } finally {
    c.close();
    raw.close();
    const end = await proc.stop();
    assert.deepEqual(end, { code: 0, signal: null }, `the snapshotter stops cleanly: ${proc.stderr().slice(-2000)}`);
  }
  // Records and devices agree, and the metadata checks clean.
  const layers = new DockerRecords(pool, true).readIndex().layers;
  const infos = new DockerRecords(pool, true).listDevInfos();
  for (const k of Object.keys(new SnapshotRecords(pool, true).read().snapshots)) assert.ok(Object.prototype.hasOwnProperty.call(layers, k), `the record of ${JSON.stringify(k)} names a layer`);
  const p = Pool.open(pool, { readOnly: true });
  try {
    const devices = new Set(p.devices());
    for (const [name, l] of Object.entries(layers)) {
      const info = infos.get(l.cacheId);
      assert.ok(info, `layer ${JSON.stringify(name)} has a device record`);
      assert.ok(devices.has(info.device_id), `layer ${JSON.stringify(name)}'s device ${info.device_id} exists`);
    }
    assert.deepEqual([...devices].sort(), [...infos.values()].map((d) => d.device_id).sort(), 'every device has a record, every record a device');
  } finally {
    await p.close();
  }
  thinsimOk(['check', pool]);
  metadataOracles(t, metadataFile(pool));
});

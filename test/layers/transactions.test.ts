/**
 * Docker's records and transaction protocol (src/layers/records.ts).
 *
 *  - The records are Docker's files with Docker's field names, written as Go's encoding/json
 *    writes them (compact, field order of the structs in moby's deviceset.go). The expected
 *    fields and their Go types are the structs of moby's daemon/graphdriver/devmapper/
 *    deviceset.go (GO_STRUCTS below: names from their json tags, untagged exported fields
 *    under their Go names, `json:"-"` and unexported fields absent).
 *  - Crash between every pair of steps: a child process runs one device creation (of the
 *    base device, or of a layer) or deletion and SIGKILLs itself right after step N
 *    (crash points layers:create:N / layers:delete:N, through test/helpers/crash-hook.js). The metadata as the crash left it passes thinsim's check and both
 *    thin_checks; reopening the store rolls the transaction back as Docker does; then the
 *    device records, thinsim's index and the pool's devices agree, and the checks pass again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CRASH_HOOK } from '../helpers/crash-hook';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LayerStore } from '../../src/layers';
import { DockerRecords } from '../../src/layers/records';
import { Pool } from '../../src/pool/pool';
import { metadataOracles, MiB, tempDir } from '../helpers/pool-model';

const CHILD = path.resolve(__dirname, 'fixtures', 'crash-child.js');

async function createPool(dir: string): Promise<void> {
  const p = Pool.create(dir, { dataSize: 256 * MiB, metadataSize: 8 * MiB });
  await p.close();
}

/** Run the child until it kills itself after `step` of `op`; returns how it ended. */
function runChild(dir: string, op: string, crash: string): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--require', CRASH_HOOK, CHILD], {
      env: { ...process.env, CRASH_LAYERS_POOL: dir, CRASH_LAYERS_OP: op, THINSIM_CRASH_AT: `layers:${crash}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** Records, index and pool devices agree; no transaction is left open. */
function assertAgree(dir: string, label: string): { hashes: string[]; layers: string[] } {
  const pool = Pool.open(dir, { readOnly: true });
  try {
    const rec = new DockerRecords(dir, true);
    const infos = rec.listDevInfos();
    const recordIds = [...infos.values()].map((d) => d.device_id).sort((a, b) => a - b);
    assert.deepEqual(pool.devices().slice().sort((a, b) => a - b), recordIds, `${label}: pool devices = device records`);
    const idx = rec.readIndex();
    for (const l of Object.values(idx.layers)) assert.ok(infos.has(l.cacheId), `${label}: index entry ${l.name} has a device record`);
    const t = rec.readTransaction();
    if (t) assert.ok(t.open_transaction_id <= pool.status().transactionId, `${label}: no transaction left open (${t.open_transaction_id} > ${pool.status().transactionId})`);
    for (const [hash, d] of infos) assert.ok(d.transaction_id <= pool.status().transactionId, `${label}: record ${hash || 'base'} has a closed transaction id`);
    return { hashes: [...infos.keys()].sort(), layers: Object.keys(idx.layers).sort() };
  } finally {
    void pool.close();
  }
}

type GoType = 'int' | 'uint64' | 'bool' | 'string';

/**
 * What encoding/json writes for moby's devmapper records, field by field in struct order:
 * devInfo (one file per device, "base" for the base device), DeviceSet (deviceset-metadata:
 * only NextDeviceID is tagged, BaseDeviceUUID and BaseDeviceFilesystem are exported without
 * tags, everything else is unexported or `json:"-"`) and transaction (transaction-metadata).
 */
const GO_STRUCTS: Record<'devInfo' | 'DeviceSet' | 'transaction', Array<[string, GoType]>> = {
  devInfo: [['device_id', 'int'], ['size', 'uint64'], ['transaction_id', 'uint64'], ['initialized', 'bool'], ['deleted', 'bool']],
  DeviceSet: [['next_device_id', 'int'], ['BaseDeviceUUID', 'string'], ['BaseDeviceFilesystem', 'string']],
  transaction: [['open_transaction_id', 'uint64'], ['device_hash', 'string'], ['device_id', 'int']],
};

/** Parse a record and check it is what json.Marshal of `struct` writes: compact, those fields in that order, of those types. */
function goRecord(file: string, struct: keyof typeof GO_STRUCTS): Record<string, unknown> {
  const text = fs.readFileSync(file, 'utf8');
  const v = JSON.parse(text) as Record<string, unknown>;
  assert.equal(JSON.stringify(v), text, `${path.basename(file)}: compact JSON, as json.Marshal writes it`);
  const fields = GO_STRUCTS[struct];
  assert.deepEqual(Object.keys(v), fields.map(([k]) => k), `${path.basename(file)}: the fields of moby's ${struct}, in struct order`);
  for (const [k, type] of fields) {
    const x = v[k];
    const ok = type === 'bool' ? typeof x === 'boolean' : type === 'string' ? typeof x === 'string'
      : Number.isSafeInteger(x) && (type === 'int' || (x as number) >= 0);
    assert.ok(ok, `${path.basename(file)}: ${k} is a Go ${type}, got ${JSON.stringify(x)}`);
  }
  return v;
}

test('records: Docker\'s files, field names and JSON as Go writes them', async (t) => {
  const dir = tempDir(t, 'thinsim-layers-rec-');
  await createPool(dir);
  const s = await LayerStore.open(dir, { baseSize: 16 * MiB, filesystem: 'none', commitInterval: 0 });
  let chainId = '';
  try {
    await s.prepare('a');
    chainId = 'sha256:' + 'c'.repeat(64);
    const c = await s.commit('A', 'a', { chainId, diffId: 'sha256:' + 'd'.repeat(64), size: 1234 });
    const root = path.join(dir, 'docker');
    const md = path.join(root, 'devicemapper', 'metadata');
    assert.deepEqual(fs.readdirSync(md).sort(), ['base', c.cacheId, 'deviceset-metadata', 'transaction-metadata'].sort());
    const tid = s.pool.status().transactionId;
    const devices = s.pool.devices();
    const base = goRecord(path.join(md, 'base'), 'devInfo');
    const layer = goRecord(path.join(md, c.cacheId), 'devInfo');
    assert.ok(devices.includes(base.device_id as number) && devices.includes(layer.device_id as number) && base.device_id !== layer.device_id, 'each record names its own device of the pool');
    assert.equal(layer.device_id, c.deviceId);
    assert.deepEqual([base.size, layer.size], [16 * MiB, 16 * MiB], 'the base size, inherited by the snapshot');
    assert.deepEqual([base.initialized, layer.initialized, base.deleted, layer.deleted], [true, false, false, false], 'the base has its filesystem (none); a layer is never initialized (Docker initializes only the base)');
    assert.ok((base.transaction_id as number) < (layer.transaction_id as number) && layer.transaction_id === tid, 'each device was created in its own pool transaction, the layer in the last one');
    const set = goRecord(path.join(md, 'deviceset-metadata'), 'DeviceSet');
    assert.equal(set.next_device_id, Math.max(...devices), 'next_device_id is the last id handed out');
    assert.equal(set.BaseDeviceFilesystem, 'none');
    const tx = goRecord(path.join(md, 'transaction-metadata'), 'transaction');
    assert.deepEqual([tx.open_transaction_id, tx.device_hash, tx.device_id], [tid, c.cacheId, c.deviceId], 'the last transaction: the layer\'s creation, closed at the pool\'s transaction id');
    const ldb = path.join(root, 'image', 'devicemapper', 'layerdb', 'sha256', 'c'.repeat(64));
    assert.deepEqual(fs.readdirSync(ldb).sort(), ['cache-id', 'diff', 'size']);
    assert.equal(fs.readFileSync(path.join(ldb, 'cache-id'), 'utf8'), c.cacheId);
    assert.equal(fs.readFileSync(path.join(ldb, 'diff'), 'utf8'), 'sha256:' + 'd'.repeat(64));
    assert.equal(fs.readFileSync(path.join(ldb, 'size'), 'utf8'), '1234');
    assert.equal(tid, 2, 'one pool transaction per device creation (base, a)');
    // No temporary files are left beside the records.
    assert.deepEqual(fs.readdirSync(md).filter((n) => n.startsWith('.')), []);
    await s.prepare('b', 'A');
    const b = await s.commit('B', 'b', { chainId: 'sha256:' + 'e'.repeat(64) });
    const ldbB = path.join(root, 'image', 'devicemapper', 'layerdb', 'sha256', 'e'.repeat(64));
    assert.equal(fs.readFileSync(path.join(ldbB, 'parent'), 'utf8'), chainId, 'parent defaults to the parent layer\'s ChainID');
    assert.equal(s.stat('eee').name, 'B', 'unique ChainID prefix');
    assert.equal(s.stat('sha256:' + 'e'.repeat(64)).cacheId, b.cacheId);
    await s.remove('B');
    assert.ok(!fs.existsSync(ldbB), 'remove drops the layerdb directory');
    assert.ok(!fs.existsSync(path.join(md, b.cacheId)), 'remove drops the device record');
  } finally {
    await s.close();
  }
  assertAgree(dir, 'after the session');
});

const STEPS = [1, 2, 3, 4];

for (const op of ['base', 'create', 'delete'] as const) {
  for (const step of STEPS) {
    test(`crash after step ${step} of ${op === 'delete' ? 'a deletion' : op === 'base' ? 'the base device\'s creation' : 'a layer\'s creation'}: rolled back as Docker does; records and devices agree; checks pass`, async (t) => {
      const dir = tempDir(t, 'thinsim-layers-crash-');
      await createPool(dir);
      if (op !== 'base') {
        const s = await LayerStore.open(dir, { baseSize: 16 * MiB, filesystem: 'none', commitInterval: 0 });
        try {
          await s.prepare('keep');
          await s.write('keep', 0, Buffer.alloc(65536, 7));
          await s.commit('KEEP', 'keep');
          if (op === 'delete') {
            await s.prepare('victim', 'KEEP');
            await s.write('victim', 65536, Buffer.alloc(65536, 9));
          }
        } finally {
          await s.close();
        }
      }
      const before = assertAgree(dir, 'before');
      const r = await runChild(dir, op === 'base' ? 'base' : op, `${op === 'delete' ? 'delete' : 'create'}:${step}`);
      assert.equal(r.signal, 'SIGKILL', `the child killed itself after step ${step} (exit ${r.code}): ${r.stderr}`);
      // The metadata exactly as the crash left it.
      metadataOracles(t, path.join(dir, 'metadata'), `as left by the crash after step ${step}: `);

      const s = await LayerStore.open(dir, { baseSize: 16 * MiB, filesystem: 'none', commitInterval: 0 });
      let recovered;
      try {
        recovered = s.recovery!;
        if (step < 4) assert.ok(recovered.rolledBack, 'an open transaction was found and rolled back');
        else assert.equal(recovered.rolledBack, undefined, 'the transaction had closed: nothing to roll back');
      } finally {
        await s.close();
      }
      const after = assertAgree(dir, 'after the reopen');
      if (op === 'delete') {
        assert.deepEqual(after.layers, ['KEEP'], 'a deletion caught half way is completed (Docker deletes the device in rollback)');
      } else if (op === 'create') {
        assert.deepEqual(after.layers, step === 4 ? ['KEEP', 'x'] : ['KEEP'], step === 4 ? 'the closed creation stays' : 'the creation is undone');
        assert.equal(after.hashes.length, before.hashes.length + (step === 4 ? 1 : 0));
      } else {
        // The base device's creation: undone before step 4; after it the base stays, not yet
        // initialized (its filesystem was never made), so the next user replaces it.
        assert.deepEqual(after.layers, []);
        assert.deepEqual(after.hashes, step === 4 ? [''] : []);
        if (step === 4) assert.equal(new DockerRecords(dir, true).readDevInfo('')!.initialized, false);
      }
      metadataOracles(t, path.join(dir, 'metadata'), `after the reopen (step ${step}): `);

      // The store works on: a new layer on the (possibly replaced) base, then a clean check.
      const s2 = await LayerStore.open(dir, { baseSize: 16 * MiB, filesystem: 'none', commitInterval: 0 });
      try {
        const y = await s2.prepare('y');
        await s2.write('y', 0, Buffer.alloc(4096, 1));
        assert.equal((await s2.read('y', 0, 4096))[0], 1);
        if (op === 'base') assert.equal(new DockerRecords(dir, true).readDevInfo('')!.initialized, true, 'an uninitialized base is replaced');
        assert.ok(s2.pool.devices().includes(y.deviceId), 'the new layer is a device of the pool');
      } finally {
        await s2.close();
      }
      assertAgree(dir, 'after more work');
      metadataOracles(t, path.join(dir, 'metadata'), 'final: ');
    });
  }
}

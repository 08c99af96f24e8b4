/**
 * A child for test/mounts: `node holder-child.js hold POOL LAYER` opens the layer store
 * read-write, mounts LAYER read-write, prints one JSON line ({ path, file, loop, pid }) and
 * waits to be killed. Loaded by `node --test` without arguments, it does nothing.
 */
import { LayerStore } from '../../src/layers/snapshotter';

async function hold(pool: string, layer: string): Promise<void> {
  const store = await LayerStore.open(pool, { commitInterval: 0 });
  const m = await store.mount(layer, { readOnly: false });
  const loop = store.host.attachments()[0]?.loop;
  process.stdout.write(JSON.stringify({ path: m.path, file: m.file, loop, pid: process.pid }) + '\n');
  setInterval(() => undefined, 1 << 30);
}

if (process.argv[2] === 'hold') {
  hold(process.argv[3], process.argv[4]).catch((e) => { process.stderr.write(String(e?.stack ?? e) + '\n'); process.exit(1); });
}

/**
 * `thinsim layer ...`: image layers as thin snapshots (src/layers), pool directory first.
 * Writing verbs open the store read-write (rolling back an unfinished transaction);
 * reporting verbs open it read-only and take --json.
 */
import type { Argv, CommandModule } from 'yargs';
import type { LayerInfo } from '../../layers';
import { parseSize } from '../../units';
import { printJson, stdout, writeFd } from '../output';
import { storeOptions, withStore, withStoreReadOnly } from '../store';

const loadLayers = () => import('../../layers');

const pool = (y: Argv) => y.positional('pool', { type: 'string', demandOption: true, describe: 'pool directory (thinsim pool create)' });
const json = (y: Argv) => y.option('json', { type: 'boolean', describe: 'print JSON' });

/** --base-size, --fs, --min-free-space: how the base device is made and when snapshots are refused. */
const storeFlags = (y: Argv) => y
  .option('base-size', { type: 'string', describe: 'virtual size of the base device, made on first use (Docker\'s dm.basesize; default 10G)' })
  .option('fs', { type: 'string', choices: ['ext4', 'xfs', 'none'], describe: 'filesystem of the base device (Docker\'s dm.fs; default ext4)' })
  .option('min-free-space', { type: 'string', describe: 'refuse new snapshots below this free data/metadata space (Docker\'s dm.min_free_space; default 10%)' });

function line(l: LayerInfo): string {
  const id = l.chainId ? ` ${l.chainId.slice(0, 19)}` : '';
  return `${l.name} (${l.kind}${l.faulty ? ', FAULTY' : ''}, device ${l.deviceId}${id})`;
}

function printInfo(l: LayerInfo, asJson: boolean): void {
  if (asJson) return printJson(l);
  const rows: Array<[string, string | number | undefined]> = [
    ['name', l.name], ['kind', l.kind], ['faulty', l.faulty], ['parent', l.parent ?? '(base device)'], ['chain id', l.chainId], ['diff id', l.diffId],
    ['cache id', l.cacheId], ['device id', l.deviceId], ['size', l.size], ['created', l.created],
  ];
  stdout(rows.filter(([, v]) => v !== undefined).map(([k, v]) => `${(k + ':').padEnd(11)}${v}\n`).join(''));
}

/** The tree: one line per layer, children indented under their parent. */
export function renderTree(layers: LayerInfo[]): string {
  const depth = new Map<string, number>();
  let out = '';
  for (const l of layers) {
    const d = l.parent !== undefined && depth.has(l.parent) ? depth.get(l.parent)! + 1 : 0;
    depth.set(l.name, d);
    out += `${d === 0 ? '' : '  '.repeat(d - 1) + '└─ '}${line(l)}\n`;
  }
  return out || '(no layers)\n';
}

const prepare: CommandModule<{}, any> = {
  command: 'prepare <pool> <key>',
  describe: 'Make an active, writable snapshot of a committed layer (or of the base device)',
  builder: (y: Argv) => json(storeFlags(pool(y).positional('key', { type: 'string', demandOption: true }).option('parent', { type: 'string', describe: 'committed layer to snapshot' }))),
  handler: (a) => withStore(a.pool, storeOptions(a as { baseSize?: string }), async (s) => printInfo(await s.prepare(a.key, a.parent), !!a.json)),
};

const commit: CommandModule<{}, any> = {
  command: 'commit <pool> <name> <key>',
  describe: 'Freeze active snapshot KEY as committed layer NAME; later writes are refused',
  builder: (y: Argv) => json(pool(y).positional('name', { type: 'string', demandOption: true }).positional('key', { type: 'string', demandOption: true })
    .option('chain-id', { type: 'string', describe: 'sha256:... ChainID: writes image/devicemapper/layerdb/sha256/<id>/' })
    .option('diff-id', { type: 'string', describe: 'sha256:... DiffID of the layer\'s tar' })
    .option('parent-chain-id', { type: 'string', describe: 'default: the parent layer\'s ChainID' })
    .option('size', { type: 'string', describe: 'the layer\'s size for layerdb (bytes)' })),
  handler: (a) => withStore(a.pool, {}, async (s) => printInfo(await s.commit(a.name, a.key, {
    chainId: a.chainId, diffId: a.diffId, parentChainId: a.parentChainId, size: a.size === undefined ? undefined : parseSize(a.size, '--size'),
  }), !!a.json)),
};

const view: CommandModule<{}, any> = {
  command: 'view <pool> <key> <parent>',
  describe: 'Make a read-only snapshot of a committed layer',
  builder: (y: Argv) => json(pool(y).positional('key', { type: 'string', demandOption: true }).positional('parent', { type: 'string', demandOption: true })),
  handler: (a) => withStore(a.pool, {}, async (s) => printInfo(await s.view(a.key, a.parent), !!a.json)),
};

const rm: CommandModule<{}, any> = {
  command: 'rm <pool> <name>',
  describe: 'Remove a layer without children: discard its blocks, then delete its device',
  builder: (y: Argv) => pool(y).positional('name', { type: 'string', demandOption: true }),
  handler: (a) => withStore(a.pool, {}, (s) => s.remove(a.name)),
};

const stat: CommandModule<{}, any> = {
  command: 'stat <pool> <name>',
  describe: 'One layer, by key, ChainID or unique ChainID prefix',
  builder: (y: Argv) => json(pool(y).positional('name', { type: 'string', demandOption: true })),
  handler: (a) => withStoreReadOnly(a.pool, (s) => printInfo(s.stat(a.name), !!a.json)),
};

const ls: CommandModule<{}, any> = {
  command: 'ls <pool>',
  describe: 'Every layer as a tree (parents before children)',
  builder: (y: Argv) => json(pool(y)),
  handler: (a) => withStoreReadOnly(a.pool, (s) => {
    const layers = s.list();
    if (a.json) printJson(layers);
    else stdout(renderTree(layers));
  }),
};

const usage: CommandModule<{}, any> = {
  command: 'usage <pool> [name]',
  describe: 'Mapped, exclusive and shared bytes per layer, as thin_ls counts them',
  builder: (y: Argv) => json(pool(y).positional('name', { type: 'string' })),
  handler: (a) => withStoreReadOnly(a.pool, (s) => {
    const rows = s.usage(a.name);
    if (a.json) return printJson(rows);
    const w = Math.max(4, ...rows.map((r) => r.name.length));
    stdout(`${'NAME'.padEnd(w)} ${'MAPPED_BYTES'.padStart(14)} ${'EXCLUSIVE_BYTES'.padStart(16)} ${'SHARED_BYTES'.padStart(14)}\n`);
    for (const r of rows) stdout(`${r.name.padEnd(w)} ${String(r.mappedBytes).padStart(14)} ${String(r.exclusiveBytes).padStart(16)} ${String(r.sharedBytes).padStart(14)}\n`);
  }),
};

const diff: CommandModule<{}, any> = {
  command: 'diff <pool> <a> <b>',
  describe: 'Byte ranges that differ between two layers, as thin_delta finds them',
  builder: (y: Argv) => json(pool(y).positional('a', { type: 'string', demandOption: true }).positional('b', { type: 'string', demandOption: true })),
  handler: (a) => withStoreReadOnly(a.pool, (s) => {
    const rows = s.diff(a.a, a.b);
    if (a.json) return printJson(rows);
    for (const r of rows) stdout(`${r.kind.padEnd(10)} offset ${r.offset} length ${r.length}\n`);
  }),
};

const synth: CommandModule<{}, any> = {
  command: 'synth <pool>',
  describe: 'Build a chain of committed layers from block-level changes (no filesystem); deterministic per seed',
  builder: (y: Argv) => json(storeFlags(pool(y))
    .option('layers', { type: 'number', demandOption: true, describe: 'how many layers' })
    .option('new', { type: 'string', default: '5%', describe: 'per layer: write this share of the device\'s chunks that are unmapped' })
    .option('modify', { type: 'string', default: '5%', describe: 'per layer: overwrite 4 KiB in this share of the mapped chunks' })
    .option('delete', { type: 'string', default: '1%', describe: 'per layer: discard this share of the mapped chunks' })
    .option('seed', { type: 'number', default: 1 })
    .option('parent', { type: 'string', describe: 'committed layer to start on (default: the base device)' })
    .option('prefix', { type: 'string', default: 'synth', describe: 'layers are named PREFIX-1 ... PREFIX-N' })),
  handler: async (a) => {
    const { synthesize, parsePercent } = await loadLayers();
    const o = { fs: 'none', ...a };
    const r = await withStore(a.pool, storeOptions(o), (s) => synthesize(s, {
      layers: a.layers, newPercent: parsePercent(a.new, 'new'), modifyPercent: parsePercent(a.modify, 'modify'), deletePercent: parsePercent(a.delete, 'delete'),
      seed: a.seed, parent: a.parent, prefix: a.prefix,
    }));
    if (a.json) return printJson(r);
    for (const l of r.layers) stdout(`${l.name}: device ${l.deviceId}, ${l.newChunks} new, ${l.modifiedChunks} modified, ${l.deletedChunks} deleted, ${l.mappedChunks} mapped chunks\n`);
  },
};

const cat: CommandModule<{}, any> = {
  command: 'cat <pool> <name> <path>',
  describe: 'Print a file of a layer (mounted read-only through NBD)',
  builder: (y: Argv) => pool(y).positional('name', { type: 'string', demandOption: true }).positional('path', { type: 'string', demandOption: true }),
  handler: (a) => withStoreReadOnly(a.pool, async (s) => {
    const { readLayerFile } = await import('../../layers/files');
    writeFd(1, await readLayerFile(s, a.name, a.path));
  }),
};

const files: CommandModule<{}, any> = {
  command: 'files <pool> <name>',
  describe: 'List the files of a layer (mounted read-only through NBD)',
  builder: (y: Argv) => json(pool(y).positional('name', { type: 'string', demandOption: true })),
  handler: (a) => withStoreReadOnly(a.pool, async (s) => {
    const { listLayerFiles } = await import('../../layers/files');
    const entries = await listLayerFiles(s, a.name);
    if (a.json) return printJson(entries);
    for (const e of entries) stdout(`${e.type.padEnd(7)} ${String(e.size).padStart(12)} ${e.path}\n`);
  }),
};

export const layerCommand: CommandModule = {
  command: 'layer',
  describe: 'Image layers as thin snapshots: prepare, commit, view, rm, stat, ls, usage, diff, synth, cat, files',
  builder: (y: Argv) => y.command(prepare).command(commit).command(view).command(rm).command(stat).command(ls).command(usage)
    .command(diff).command(synth).command(cat).command(files).demandCommand(1, 'Name a layer command: prepare, commit, view, rm, stat, ls, usage, diff, synth, cat or files.'),
  handler: () => undefined,
};

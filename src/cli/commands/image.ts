/**
 * `thinsim image import|ls|rm POOL ...`: images on the pool's layer store (src/layers/image.ts).
 * Import shows a progress bar on a terminal and one line per layer otherwise.
 */
import type { Argv, CommandModule } from 'yargs';
import type { ImportProgress, ImportReport, LayerImportReport } from '../../layers/image';
import { humanSize } from '../../pool/status-format';
import { printJson, stderr, stdout } from '../output';
import { storeOptions, withStore, withStoreReadOnly } from '../store';

const pool = (y: Argv) => y.positional('pool', { type: 'string', demandOption: true, describe: 'pool directory (thinsim pool create)' });
const json = (y: Argv) => y.option('json', { type: 'boolean', describe: 'print JSON' });
const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);

function layerLine(l: LayerImportReport, layers: number): string {
  const what = l.shared ? 'already present, shared' : `${humanSize(l.tarBytes)} tar, ${l.files} files, ${l.whiteouts} whiteouts${l.opaqueDirs ? `, ${l.opaqueDirs} opaque` : ''}, ${l.seconds.toFixed(2)}s`;
  return `  layer ${l.index}/${layers} ${short(l.chainId)}: ${what}`;
}

/** A cli-progress bar on a terminal; plain lines otherwise. */
async function progressPrinter(): Promise<{ on: (p: ImportProgress) => void; stop: () => void }> {
  if (!process.stderr.isTTY) {
    return { on: (p) => { if (p.event === 'layer-done') stdout(layerLine(p.report!, p.layers) + '\n'); }, stop: () => undefined };
  }
  const { SingleBar, Presets } = await import('cli-progress');
  const bar = new SingleBar({
    format: 'image {image}/{images} layer {layer}/{layers} [{bar}] {percentage}% {done}/{all}', stream: process.stderr, hideCursor: true, clearOnComplete: true,
  }, Presets.shades_classic);
  let started = 0;
  return {
    on: (p) => {
      if (started !== p.image) { if (started) bar.stop(); bar.start(p.totalBytes, 0); started = p.image; }
      bar.update(p.bytes, { image: p.image, images: p.images, layer: p.layer, layers: p.layers, done: humanSize(p.bytes), all: humanSize(p.totalBytes) });
      if (p.event === 'layer-done') { bar.stop(); stdout(layerLine(p.report!, p.layers) + '\n'); bar.start(p.totalBytes, p.bytes); }
    },
    stop: () => bar.stop(),
  };
}

function printImport(r: ImportReport): void {
  for (const img of r.images) {
    stdout(`imported ${short(img.id)} ${img.tags.join(' ')} (${r.format}, ${img.layers.length} layers, ${img.seconds.toFixed(1)}s, filesystem ${r.filesystem})\n`);
    stdout(`  LAYER  CHAINID       DIFFID        FILES  TAR        MAPPED     EXCLUSIVE  SHARED     TIME\n`);
    for (const l of img.layers) {
      stdout(`  ${String(l.index).padStart(5)}  ${short(l.chainId)}  ${short(l.diffId)}  ${String(l.shared ? '-' : l.files).padStart(5)}  ${(l.shared ? 'shared' : humanSize(l.tarBytes)).padEnd(9)}  ${humanSize(l.mappedBytes).padEnd(9)}  ${humanSize(l.exclusiveBytes).padEnd(9)}  ${humanSize(l.sharedBytes).padEnd(9)}  ${l.seconds.toFixed(2)}s\n`);
    }
    for (const w of img.layers.flatMap((l) => l.warnings)) stderr(`thinsim: warning: ${w}\n`);
  }
}

const importCmd: CommandModule<{}, any> = {
  command: 'import <pool> <archive>',
  describe: 'Import a docker save tarball or an OCI image layout (directory or tar): one committed layer per ChainID',
  builder: (y: Argv) => json(pool(y).positional('archive', { type: 'string', demandOption: true, describe: 'docker save .tar, OCI layout .tar, or either unpacked' }))
    .option('tag', { type: 'string', describe: 'also tag the image(s) repo:tag' })
    .option('base-size', { type: 'string', describe: 'size of the base device when it is made now (default 10G)' })
    .option('fs', { type: 'string', choices: ['ext4', 'xfs'], describe: 'filesystem of the base device when it is made now (default ext4)' }),
  handler: (a) => withStore(a.pool, storeOptions(a as { baseSize?: string; fs?: string }), async (s) => {
    const { importImage } = await import('../../layers/image');
    const pr = a.json ? undefined : await progressPrinter();
    try {
      const r = await importImage(s, a.archive, { tag: a.tag, onProgress: pr?.on });
      pr?.stop();
      if (a.json) printJson(r); else printImport(r);
    } finally { pr?.stop(); }
  }),
};

const ls: CommandModule<{}, any> = {
  command: 'ls <pool>',
  describe: 'List images: tags, ID, layers, bytes mapped by the top layer and held by this image alone',
  builder: (y: Argv) => json(pool(y)),
  handler: (a) => withStoreReadOnly(a.pool, async (s) => {
    const { listImages } = await import('../../layers/image');
    const rows = listImages(s);
    if (a.json) return printJson(rows);
    stdout('REPOSITORY:TAG                 IMAGE ID      LAYERS  MAPPED     EXCLUSIVE  CREATED\n');
    for (const r of rows) {
      for (const t of r.tags.length ? r.tags : ['<none>']) {
        stdout(`${t.padEnd(30)} ${short(r.id)}  ${String(r.layers).padStart(6)}  ${humanSize(r.mappedBytes).padEnd(9)}  ${humanSize(r.exclusiveBytes).padEnd(9)}  ${r.created ?? ''}${r.complete ? '' : '  (layers missing)'}\n`);
      }
    }
  }),
};

const rm: CommandModule<{}, any> = {
  command: 'rm <pool> <image>',
  describe: 'Untag an image; one left without tags is removed with the layers no other image uses',
  builder: (y: Argv) => json(pool(y).positional('image', { type: 'string', demandOption: true, describe: 'repo:tag, image ID or ID prefix' })),
  handler: (a) => withStore(a.pool, {}, async (s) => {
    const { removeImage } = await import('../../layers/image');
    const r = await removeImage(s, a.image);
    if (a.json) return printJson(r);
    for (const t of r.untagged) stdout(`Untagged: ${t}\n`);
    if (r.deleted) stdout(`Deleted: ${r.deleted}\n`);
    for (const l of r.layersRemoved) stdout(`Deleted layer: ${l}\n`);
    if (r.deleted) stdout(`Freed ${humanSize(r.freedBytes)} of pool data space\n`);
  }),
};

export const imageCommand: CommandModule<{}, {}> = {
  command: 'image',
  describe: 'Images on thin-snapshot layers: import docker save / OCI archives, list, remove',
  builder: (y) => y.command(importCmd).command(ls).command(rm).demandCommand(1, 'Name an image command: import, ls or rm.'),
  handler: () => undefined,
};

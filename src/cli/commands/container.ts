/**
 * `thinsim container create|rm|ls POOL ...`: Docker's init layer and container layer on an
 * image's top layer (src/layers/container.ts).
 */
import type { Argv, CommandModule } from 'yargs';
import { humanSize } from '../../pool/status-format';
import { printJson, stdout } from '../output';
import { withStore, withStoreReadOnly } from '../store';

const pool = (y: Argv) => y.positional('pool', { type: 'string', demandOption: true, describe: 'pool directory' });
const json = (y: Argv) => y.option('json', { type: 'boolean', describe: 'print JSON' });

const create: CommandModule<{}, any> = {
  command: 'create <pool> <image> <name>',
  describe: 'Make a container: the <mount-id>-init layer (Docker\'s init files) on the image, and the container\'s read-write layer on that',
  builder: (y: Argv) => json(pool(y).positional('image', { type: 'string', demandOption: true, describe: 'repo:tag or image ID' })
    .positional('name', { type: 'string', demandOption: true, describe: 'container name' })),
  handler: (a) => withStore(a.pool, {}, async (s) => {
    const { createContainer } = await import('../../layers/container');
    const r = await createContainer(s, a.image, a.name);
    if (a.json) return printJson(r);
    stdout(`${r.containerId}\n`);
    stdout(`  name ${r.name}, image ${r.image.slice(7, 19)}, mount-id ${r.mountId.slice(0, 12)}, init layer adds ${r.initFiles.join(' ') || 'nothing'}\n`);
  }),
};

const rm: CommandModule<{}, any> = {
  command: 'rm <pool> <name>',
  describe: 'Remove a container: its layer and its init layer (discarded first), and its records',
  builder: (y: Argv) => json(pool(y).positional('name', { type: 'string', demandOption: true, describe: 'name, ID or ID prefix' })),
  handler: (a) => withStore(a.pool, {}, async (s) => {
    const { removeContainer } = await import('../../layers/container');
    const r = await removeContainer(s, a.name);
    if (a.json) return printJson(r);
    stdout(`${r.containerId}\n  removed ${r.layersRemoved.length} layers, freed ${humanSize(r.freedBytes)} of pool data space\n`);
  }),
};

const ls: CommandModule<{}, any> = {
  command: 'ls <pool>',
  describe: 'List containers with their layers\' usage',
  builder: (y: Argv) => json(pool(y)),
  handler: (a) => withStoreReadOnly(a.pool, async (s) => {
    const { listContainers } = await import('../../layers/container');
    const usage = new Map(s.usage().map((u) => [u.name, u]));
    const rows = listContainers(s).map((c) => ({ ...c, exclusiveBytes: (usage.get(c.mountId)?.exclusiveBytes ?? 0) + (usage.get(c.initId)?.exclusiveBytes ?? 0) }));
    if (a.json) return printJson(rows);
    stdout('CONTAINER ID   NAME                 IMAGE         EXCLUSIVE  CREATED\n');
    for (const c of rows) stdout(`${c.containerId.slice(0, 12)}   ${c.name.padEnd(20)} ${c.image.slice(7, 19)}  ${humanSize(c.exclusiveBytes).padEnd(9)}  ${c.created ?? ''}\n`);
  }),
};

export const containerCommand: CommandModule<{}, {}> = {
  command: 'container',
  describe: 'Containers as Docker\'s devicemapper driver makes them: an init layer and a read-write layer',
  builder: (y) => y.command(create).command(rm).command(ls).demandCommand(1, 'Name a container command: create, rm or ls.'),
  handler: () => undefined,
};

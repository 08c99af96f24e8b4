import type { CommandModule } from 'yargs';
import { checkCommand } from './check';
import { containerCommand } from './container';
import { demoCommand } from './demo';
import { deltaCommand } from './delta';
import { dumpCommand } from './dump';
import { experimentCommand } from './experiment';
import { layerCommand } from './layer';
import { imageCommand } from './image';
import { lsCommand } from './ls';
import { poolCommand } from './pool';
import { thinCommand } from './thin';
import { restoreCommand } from './restore';
import { serveCommand } from './serve';
import { snapshotterCommand } from './snapshotter';

/** Every verb, in the order `thinsim --help` lists them. */
export const commands: CommandModule<any, any>[] = [demoCommand, poolCommand, thinCommand, restoreCommand, checkCommand, dumpCommand, lsCommand, deltaCommand, serveCommand, layerCommand, imageCommand, containerCommand, snapshotterCommand, experimentCommand];

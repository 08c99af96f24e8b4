import type { CommandModule } from 'yargs';
import { checkCommand } from './check';
import { deltaCommand } from './delta';
import { dumpCommand } from './dump';
import { lsCommand } from './ls';
import { restoreCommand } from './restore';

/** Every verb, in the order `thinsim --help` lists them. */
export const commands: CommandModule<any, any>[] = [restoreCommand, checkCommand, dumpCommand, lsCommand, deltaCommand];

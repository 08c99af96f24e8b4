import type { CommandModule } from 'yargs';

/** Every verb, in the order `thinsim --help` lists them. */
export const commands: CommandModule<any, any>[] = [];

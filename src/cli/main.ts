/**
 * CLI root: yargs with one module per verb under ./commands. A verb parses its
 * arguments, calls one library function, prints, and maps ThinError codes to exit
 * statuses. Nothing in src/ imports cli.
 */
import yargs from 'yargs';
import { ThinError } from '../errors';
import { commands } from './commands';
import { versionLine } from '../version';

/** Exit statuses: 0 ok, 1 a finding (check) or a failed operation, 2 bad usage/input. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function exitCodeFor(e: unknown): number {
  if (e instanceof ThinError) {
    switch (e.code) {
      case 'E_INVALID':
      case 'E_PARSE':
      case 'E_RANGE':
        return EXIT_USAGE;
      default:
        return EXIT_FAILURE;
    }
  }
  return EXIT_FAILURE;
}

export function reportError(e: unknown): void {
  if (e instanceof ThinError) {
    const bug = e.code === 'E_INVARIANT' ? ' (a bug in thinsim, not damage to your pool: nothing wrong was committed; please report it)' : '';
    process.stderr.write(`thinsim: ${e.message} [${e.code}]${bug}\n`);
  } else {
    process.stderr.write(`thinsim: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  }
}

export async function main(argv: string[]): Promise<void> {
  let y = yargs(argv)
    .scriptName('thinsim')
    .usage('$0 <command> [options]\n\nA userspace dm-thin pool: kernel-format metadata, copy-on-write snapshots, image layers.')
    .version(versionLine())
    .strict()
    .demandCommand(1, 'Name a command; see thinsim --help.')
    .recommendCommands()
    .middleware((argv) => {
      // yargs turns a non-numeric value of a number option into NaN; refuse it by name.
      for (const [k, v] of Object.entries(argv)) {
        if (k === '$0' || k === '_' || k.includes('-') === false && /[A-Z]/.test(k)) continue;
        const values = Array.isArray(v) ? v : [v];
        if (values.some((x) => typeof x === 'number' && Number.isNaN(x))) {
          throw new ThinError('E_INVALID', `${k} must be a number`);
        }
      }
    }, true)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) {
        reportError(err);
        process.exit(exitCodeFor(err));
      }
      process.stderr.write(`thinsim: ${msg}\nRun "thinsim --help" for usage.\n`);
      process.exit(EXIT_USAGE);
    });
  for (const c of commands) y = y.command(c as any);
  try {
    await y.parseAsync();
  } catch (e) {
    reportError(e);
    process.exit(exitCodeFor(e));
  }
}

/**
 * CLI root: yargs with one module per verb under ./commands. A verb parses its
 * arguments, calls one library function, prints, and maps ThinError codes to exit
 * statuses. Nothing in src/ imports cli.
 *
 * Start-up cost: a run loads only the module of the verb it names (VERB_MODULES), so an
 * offline tool such as `thinsim dump` never loads the pool engine, the NBD server, gRPC
 * or the report renderer. Every verb is loaded (./commands, in --help order) only when
 * none is named, or the word is not a verb (yargs then lists or suggests them).
 */
import yargs, { type CommandModule } from 'yargs';
import { ioError, ThinError } from '../errors';
import { versionLine } from '../version';

/**
 * Each top-level verb and how to load its module alone (the word must be the first word
 * of the module's `command`; test/cli/lazy-commands.test.ts keeps this table and
 * ./commands in step).
 */
export const VERB_MODULES: Readonly<Record<string, () => CommandModule<any, any>>> = {
  demo: () => require('./commands/demo').demoCommand,
  pool: () => require('./commands/pool').poolCommand,
  thin: () => require('./commands/thin').thinCommand,
  restore: () => require('./commands/restore').restoreCommand,
  check: () => require('./commands/check').checkCommand,
  dump: () => require('./commands/dump').dumpCommand,
  ls: () => require('./commands/ls').lsCommand,
  delta: () => require('./commands/delta').deltaCommand,
  serve: () => require('./commands/serve').serveCommand,
  layer: () => require('./commands/layer').layerCommand,
  image: () => require('./commands/image').imageCommand,
  container: () => require('./commands/container').containerCommand,
  snapshotter: () => require('./commands/snapshotter').snapshotterCommand,
  experiment: () => require('./commands/experiment').experimentCommand,
};

/**
 * The command modules a run with these arguments needs: the named verb's alone; none for
 * a bare `--version`; otherwise all of them.
 */
export function commandsFor(argv: readonly string[]): CommandModule<any, any>[] {
  if (argv.length === 1 && argv[0] === '--version') return [];
  const first = argv[0];
  if (first !== undefined && Object.prototype.hasOwnProperty.call(VERB_MODULES, first)) return [VERB_MODULES[first]()];
  return (require('./commands') as typeof import('./commands')).commands;
}

/** Exit statuses: 0 ok, 1 a finding (check) or a failed operation, 2 bad usage/input. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function exitCodeFor(e: unknown): number {
  if (isUsageError(e)) return EXIT_USAGE;
  const t = asThinError(e);
  if (t) {
    switch (t.code) {
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

/** The command words the user typed ("pool create"), for a pointer to that verb's --help. */
let commandWords = '';

function usageLine(msg: string): string {
  // yargs' wording for missing positionals names no argument: say what to do instead.
  const m = /^Not enough non-option arguments: got (\d+), need at least (\d+)$/.exec(msg);
  const what = m ? `missing argument${Number(m[2]) - Number(m[1]) > 1 ? 's' : ''} (got ${m[1]}, need at least ${m[2]})` : msg;
  return `thinsim: ${what}\nRun "thinsim ${commandWords ? commandWords + ' ' : ''}--help" for usage.\n`;
}

export function reportError(e: unknown): void {
  const t = asThinError(e);
  if (t) {
    const bug = t.code === 'E_INVARIANT' ? ' (a bug in thinsim, not damage to your pool: nothing wrong was committed; please report it)' : '';
    process.stderr.write(`thinsim: ${t.message} [${t.code}]${bug}\n`);
  } else if (isUsageError(e)) {
    process.stderr.write(usageLine(typeof e === 'string' ? e : (e as Error).message));
  } else {
    process.stderr.write(`thinsim: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  }
}

/**
 * yargs' own validation failures are usage errors: a YError (a missing argument), or the
 * bare string a `.check()` returned, which yargs throws as is from a nested command.
 */
function isUsageError(e: unknown): boolean {
  return typeof e === 'string' || (e as Error | undefined)?.name === 'YError';
}

/**
 * A ThinError as is; an OS error that escaped a verb (it carries errno, syscall and path)
 * as one naming the file, so a user never sees a stack trace for a missing or wrong path.
 */
function asThinError(e: unknown): ThinError | undefined {
  if (e instanceof ThinError) return e;
  const err = e as NodeJS.ErrnoException | undefined;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    return ioError(err.syscall, err.path ?? '', e);
  }
  return undefined;
}

/** Options whose names start with "no-" but take a value (not the negation of a flag). */
const VALUED_NO_OPTIONS = new Set(['--no-space-timeout']);

/**
 * Two spellings yargs misreads, passed on as `--option=value`:
 * - `--size -5G`: an option without its value, then the flags -5 and -G. A value that
 *   starts with a minus and a digit belongs to the option before it, so the verb can say
 *   the size is negative instead of "Unknown arguments".
 * - `--no-space-timeout 30`: the negation of a flag "space-timeout", then a stray 30.
 */
export function joinOptionValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    const valued = VALUED_NO_OPTIONS.has(a) && next !== undefined && !next.startsWith('--');
    if (valued || (/^--[a-z][\w-]*$/i.test(a) && next !== undefined && /^-\d/.test(next))) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

export async function main(argv: string[]): Promise<void> {
  const words: string[] = [];
  for (const a of argv) { if (a.startsWith('-') || words.length === 2) break; words.push(a); }
  commandWords = words.join(' ');
  let y = yargs(joinOptionValues(argv))
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
      process.stderr.write(usageLine(msg));
      process.exit(EXIT_USAGE);
    });
  for (const c of commandsFor(argv)) y = y.command(c as any);
  try {
    await y.parseAsync();
  } catch (e) {
    reportError(e);
    process.exit(exitCodeFor(e));
  }
}

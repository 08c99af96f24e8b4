import type { CommandModule } from 'yargs';
import { ThinError } from '../../errors';
import { parseSize } from '../../units';
import { printJson, stdout } from '../output';
import { wholeNumber } from '../args';
import * as fs from 'fs';

interface Args { name: string; size?: string; repeat?: string; out?: string; json?: boolean; quick?: boolean; via?: string }

export const experimentCommand: CommandModule<{}, Args> = {
  command: 'experiment <name>',
  describe: 'Run a sizing experiment (loop-vs-direct, block-size, layer-depth, overcommit, metadata-size) and write report.json/.md/.html; "experiment list" names them',
  builder: (y) => y
    .positional('name', { type: 'string', demandOption: true, describe: 'an experiment, or "list"' })
    .option('size', { type: 'string', describe: "the experiment's main size (e.g. 256M; each experiment says what it sizes)" })
    .option('repeat', { type: 'string', describe: 'repeats per configuration (interleaved)' })
    .option('out', { type: 'string', describe: 'report directory (default ./thinsim-experiment-NAME-<date>)' })
    .option('json', { type: 'boolean', describe: 'print report.json to stdout instead of a summary' })
    .option('quick', { type: 'boolean', describe: 'small sizes and one or two repeats: finishes in seconds' })
    .option('via', { type: 'string', choices: ['containerd'], describe: 'driver-compare only: run the comparison through a real containerd and runc (driver-compare-containerd)' }),
  handler: async (a) => {
    const lib = await import('../../experiments'); // loaded by the verb that needs it
    if (a.name === 'list') {
      const list = lib.listExperiments();
      if (a.json) return printJson(list);
      for (const e of list) {
        stdout(`${e.name.padEnd(16)} ${e.available ? e.title : `not yet: ${e.reason}`}\n${' '.repeat(17)}${e.question}\n`);
        if (e.size && e.repeat) stdout(`${' '.repeat(17)}--size: ${e.size.means} (default ${human(e.size.default)}, --quick ${human(e.size.quick)}); --repeat default ${e.repeat.default}, --quick ${e.repeat.quick}\n`);
      }
      return;
    }
    if (a.via !== undefined && a.name !== 'driver-compare') throw new ThinError('E_INVALID', `--via ${a.via} applies to driver-compare only`);
    if (a.via === 'containerd') a.name = 'driver-compare-containerd';
    const size = a.size === undefined ? undefined : parseSize(a.size, '--size');
    const repeat = a.repeat === undefined ? undefined : wholeNumber(a.repeat, '--repeat', { min: 1, max: 1000 });
    if (a.out !== undefined) reportDirectory(a.out);
    const { report, written } = await lib.runExperiment(a.name, { size, repeat, out: a.out, quick: a.quick });
    if (a.json) return printJson(report);
    stdout(`${report.title}\n`);
    for (const f of report.findings) stdout(`  - ${f}\n`);
    for (const s of report.skipped) stdout(`  skipped ${s.part}: ${s.reason}\n`);
    stdout(`report: ${written.html}\n        ${written.md}\n        ${written.json}\n`);
  },
};

/** --out names a directory (made if missing, with its parents); refuse an existing file. */
function reportDirectory(dir: string): void {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(dir); } catch { return; /* absent: the experiment makes it */ }
  if (!st.isDirectory()) throw new ThinError('E_INVALID', `--out ${dir} exists and is not a directory: the report is a directory of files (report.json, .md, .html); give a new or existing directory`, { file: dir });
}

function human(bytes: number): string {
  for (const [u, n] of [['G', 2 ** 30], ['M', 2 ** 20], ['K', 1024]] as const) if (bytes >= n && bytes % n === 0) return `${bytes / n}${u}`;
  return String(bytes);
}

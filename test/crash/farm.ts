/**
 * The crash farm: `npm run crash-farm -- --points N --seed S [--scenario NAME] [--json]`
 * (scripts/crash-farm.js runs this file from dist/).
 *
 * Runs N crash points, split evenly over the scenarios (or all in one with --scenario):
 * nbd and discard (nbd-scenario.ts), snapshot (snapshot-scenario.ts), power-loss
 * (power-loss.ts), layers (layers-scenario.ts: Docker's device transactions, image import
 * and removal, containers) and snapshotter (snapshotter-scenario.ts: the gRPC service's
 * Prepare, Commit and Remove). Each point is
 * named in the output with its scenario and seed; after each, verify.ts's checks run.
 * Prints one line per point (failures with what failed) and a summary; with --json only
 * `{points, failures, scenarios: {name: points}}` on stdout (failure details on stderr).
 * `--log FILE` appends every point's line, with the time, to FILE as it finishes (a long
 * --json run shows its progress there).
 * Exit 0 when every point passed, 1 when one failed, 2 on bad arguments or when a chosen
 * scenario cannot run here (layers and snapshotter need root, loop devices, nbdfuse, and
 * for layers umoci and skopeo; the message says what is missing).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nbdScenario } from './nbd-scenario';
import { powerLoss } from './power-loss';
import { attachMissing } from '../containerd/helpers';
import { layersMissing, layersScenario } from './layers-scenario';
import { snapshotScenario } from './snapshot-scenario';
import { snapshotterScenario } from './snapshotter-scenario';
import { oracleNames } from './verify';
import type { PointResult } from './farm-types';

export const SCENARIOS = ['nbd', 'snapshot', 'discard', 'power-loss', 'layers', 'snapshotter'] as const;
export type Scenario = typeof SCENARIOS[number];

export interface FarmOptions {
  points: number;
  seed: number;
  scenarios: readonly Scenario[];
  /** Called with each point as it finishes. */
  onPoint?: (p: PointResult) => void;
  scratch?: string;
}

export interface FarmResult {
  points: number;
  failures: number;
  scenarios: Record<string, number>;
  failed: PointResult[];
}

/** Points per run of one workload (one pool carried across its points). */
const PER_RUN: Record<Scenario, number> = { 'power-loss': 25, nbd: 10, discard: 10, snapshot: 10, layers: 10, snapshotter: 10 };

export async function runFarm(opts: FarmOptions): Promise<FarmResult> {
  const scratch = opts.scratch ?? fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-crash-farm-'));
  const result: FarmResult = { points: 0, failures: 0, scenarios: {}, failed: [] };
  const share = (i: number) => Math.floor(opts.points / opts.scenarios.length) + (i < opts.points % opts.scenarios.length ? 1 : 0);
  // Runs take turns between the scenarios, so a run cut short has covered each of them.
  const left = new Map<Scenario, number>(opts.scenarios.map((s, i) => [s, share(i)]));
  const runs = new Map<Scenario, number>(opts.scenarios.map((s) => [s, 0]));
  for (const s of opts.scenarios) result.scenarios[s] = 0;
  try {
    while ([...left.values()].some((n) => n > 0)) {
      for (const scenario of opts.scenarios) {
        if (left.get(scenario)! <= 0) continue;
        const run = runs.get(scenario)!;
        runs.set(scenario, run + 1);
        const seed = opts.seed * 1000 + run;
        const n = Math.min(left.get(scenario)!, PER_RUN[scenario]);
        const points = scenario === 'power-loss' ? await powerLoss(seed, n, scratch)
          : scenario === 'snapshot' ? await snapshotScenario(seed, n, scratch)
            : scenario === 'layers' ? await layersScenario(seed, n, scratch)
              : scenario === 'snapshotter' ? await snapshotterScenario(seed, n, scratch)
                : await nbdScenario(scenario, seed, n, scratch);
        if (points.length === 0) throw new Error(`${scenario} seed ${seed} produced no crash points`);
        for (const p of points) {
          result.points++;
          result.scenarios[scenario]++;
          if (p.failures.length) {
            result.failures++;
            result.failed.push(p);
          }
          opts.onPoint?.(p);
        }
        left.set(scenario, left.get(scenario)! - points.length);
      }
    }
  } finally {
    if (!opts.scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
  return result;
}

function usage(msg: string): never {
  process.stderr.write(`crash-farm: ${msg}\nusage: npm run crash-farm -- --points N --seed S [--scenario ${SCENARIOS.join('|')}] [--json] [--log FILE]\n`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<number> {
  let points = 100;
  let seed = 1;
  let json = false;
  let log: string | undefined;
  let scenarios: Scenario[] = [...SCENARIOS];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '--points') points = Number(value());
    else if (a === '--seed') seed = Number(value());
    else if (a === '--json') json = true;
    else if (a === '--log') log = value();
    else if (a === '--scenario') {
      const v = value();
      if (!SCENARIOS.includes(v as Scenario)) usage(`--scenario ${v}: choose one of ${SCENARIOS.join(', ')}`);
      scenarios = [v as Scenario];
    } else usage(`unknown argument ${a}`);
  }
  if (!Number.isSafeInteger(points) || points < 1) usage('--points must be a whole number >= 1');
  if (!Number.isSafeInteger(seed) || seed < 0) usage('--seed must be a whole number >= 0');
  for (const s of scenarios) {
    const why = s === 'layers' ? layersMissing() : s === 'snapshotter' ? attachMissing() : undefined;
    if (why) usage(`the ${s} scenario cannot run here: ${why}; leave it out by naming another with --scenario`);
  }
  const started = Date.now();
  if (!json) process.stderr.write(`crash farm: ${points} points over ${scenarios.join(', ')}, seed ${seed}; oracles: thinsim check, ${oracleNames().join(', ') || 'no thin_check installed'}\n`);
  const r = await runFarm({
    points, seed, scenarios,
    onPoint: (p) => {
      const line = `${p.failures.length ? 'FAIL' : 'ok  '} ${p.scenario}: ${p.point}${p.failures.length ? `\n    ${p.failures.slice(0, 8).join('\n    ')}` : ''}\n`;
      if (log) fs.appendFileSync(log, `${new Date().toISOString()} ${line}`);
      if (json) { if (p.failures.length) process.stderr.write(line); } else process.stdout.write(line);
    },
  });
  if (json) process.stdout.write(`${JSON.stringify({ points: r.points, failures: r.failures, scenarios: r.scenarios })}\n`);
  else process.stdout.write(`${r.points} points, ${r.failures} failed (${Object.entries(r.scenarios).map(([k, v]) => `${k} ${v}`).join(', ')}) in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return r.failures ? 1 : 0;
}

// scripts/crash-farm.js is the command's entry point: `node --test` loads this file as a
// plain file (it lives under test/), where it must run nothing.

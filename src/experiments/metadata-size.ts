/**
 * metadata-size: metadata blocks the pool really uses, against the number of mapped
 * data blocks and the number of snapshots, beside the estimate of
 * thin_metadata_size (thin-provisioning-tools 0.9 and, when present, 1.x's
 * pdata_tools) and the kernel's rule of thumb (48 bytes per data block, at least
 * 2 MiB; Documentation/admin-guide/device-mapper/thin-provisioning.rst). It answers
 * whether Docker's 2G metadata default is oversized for a 100G pool of 64K chunks.
 *
 * Contract: "measured" is the pool status's used metadata blocks x 4 KiB after a
 * commit; estimates come from running the tools, never from a formula of ours
 * (except the rule of thumb, which is a formula by definition, and a least-squares
 * line through the measured points, labelled as an extrapolation).
 */
import * as fs from 'fs';
import { ThinError } from '../errors';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { Experiment, ExperimentContext, GiB, KiB, MiB } from './experiment';
import * as host from './host';
import { Row } from './report/model';
import { interleave, payload } from './runner';

const CHUNK = 64 * KiB;
const MD_BLOCK = 4096;

export function ruleOfThumbBytes(dataBytes: number, chunkBytes: number): number {
  return Math.max(2 * MiB, 48 * Math.ceil(dataBytes / chunkBytes));
}

/** pdata_tools from scripts/get-oracles.sh (.tools/tpt), looked up from the cwd and the package root. */
export function pdataTools(): string | undefined {
  for (const root of [process.cwd(), path.resolve(__dirname, '../../..'), path.resolve(__dirname, '../..')]) {
    const p = path.join(root, '.tools/tpt/usr/sbin/pdata_tools');
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** thin_metadata_size's estimate in bytes, or undefined when the tool is missing. */
export function toolEstimate(which: '0.9' | '1.x', poolBytes: number, chunkBytes: number, maxThins: number): number | undefined {
  const args = ['-b', `${chunkBytes / KiB}k`, '-s', `${Math.ceil(poolBytes / KiB)}k`, '-m', String(maxThins), '-u', 'b', '-n'];
  const r = which === '0.9' ? (host.which('thin_metadata_size') ? host.run('thin_metadata_size', args) : undefined) : (pdataTools() ? host.run(pdataTools()!, ['thin_metadata_size', ...args]) : undefined);
  if (!r || !r.ok) return undefined;
  const n = Number(r.stdout.trim().split(/\s+/)[0]);
  return Number.isFinite(n) ? n : undefined;
}

export interface MetadataPoint { series: 'mapped blocks' | 'snapshots'; mapped: number; snapshots: number; metadataBlocks: number; totalMappings: number }

export function metadataGrid(quick: boolean, size: number) {
  const maxMapped = size / CHUNK;
  const mapped = quick ? [maxMapped / 8, maxMapped / 4, maxMapped / 2, maxMapped] : [maxMapped / 64, maxMapped / 16, maxMapped / 4, maxMapped];
  const snaps = quick ? [0, 2, 4, 8] : [0, 8, 32, 128];
  return { mapped: mapped.map(Math.floor), snaps, snapBase: Math.floor(maxMapped / 4), divergeShare: 0.05 };
}

async function point(cfg: string, ctx: ExperimentContext): Promise<MetadataPoint> {
  const [kind, nStr] = cfg.split('=');
  const g = metadataGrid(ctx.quick, ctx.size);
  const mapped = kind === 'mapped' ? Number(nStr) : g.snapBase;
  const snapshots = kind === 'snaps' ? Number(nStr) : 0;
  const dir = host.mkTemp(ctx.workDir, 'md-');
  const diverge = Math.max(1, Math.floor(mapped * g.divergeShare));
  // zero off: a 4 KiB write maps a chunk without writing 64 KiB of zeros; the mapping is the same.
  const pool = Pool.create(path.join(dir, 'pool'), { dataSize: (mapped + snapshots * diverge + 16) * CHUNK, metadataSize: 256 * MiB, blockSize: CHUNK / 512, zero: false, mode: 'loop-lvm' });
  try {
    await pool.createThin(1, mapped * CHUNK);
    const buf = payload(4 * KiB, 5);
    for (let b = 0; b < mapped; b++) await pool.write(1, b * CHUNK, buf);
    for (let s = 0; s < snapshots; s++) {
      await pool.createSnap(2 + s, 1);
      // Each snapshot (a container) rewrites its own share of the chunks, spread over the device.
      const step = Math.max(1, Math.floor(mapped / diverge));
      for (let k = 0; k < diverge; k++) await pool.write(2 + s, ((k * step + s) % mapped) * CHUNK, buf);
    }
    await pool.flush();
    const totalMappings = pool.sharing().reduce((a, d) => a + d.mappedBlocks, 0);
    return { series: kind === 'mapped' ? 'mapped blocks' : 'snapshots', mapped, snapshots, metadataBlocks: pool.status().usedMetadataBlocks, totalMappings };
  } finally {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Least squares y = a + b x. */
function fit(xs: number[], ys: number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) { sxy += (xs[i] - mx) * (ys[i] - my); sxx += (xs[i] - mx) ** 2; }
  const b = sxx === 0 ? NaN : sxy / sxx;
  return { a: my - b * mx, b };
}

export const metadataSize: Experiment = {
  name: 'metadata-size',
  title: 'Metadata size: measured vs thin_metadata_size vs the rule of thumb',
  question: 'How much metadata does a pool really need for its mapped blocks and snapshots, and is Docker\'s 2G default oversized for a 100G pool with 64K chunks?',
  sizeMeans: 'the largest mapped data',
  defaults: { size: 4 * GiB, repeat: 1 },
  quick: { size: 128 * MiB, repeat: 1 },
  tools: ['thin_metadata_size'],
  async run(ctx) {
    if (ctx.size % CHUNK !== 0 || ctx.size < 64 * CHUNK) throw new ThinError('E_INVALID', '--size (the largest mapped data size) must be a multiple of 64K, at least 4M');
    if (!host.which('thin_metadata_size')) ctx.skip('thin_metadata_size 0.9 estimate', host.toolMissing('thin_metadata_size', 'thin-provisioning-tools')!);
    if (!pdataTools()) ctx.skip('thin_metadata_size 1.x estimate', 'pdata_tools not found under .tools/tpt (scripts/get-oracles.sh fetches it)');
    const g = metadataGrid(ctx.quick, ctx.size);
    const configs = [...g.mapped.map((m) => `mapped=${m}`), ...g.snaps.map((s) => `snaps=${s}`)];
    const res = await interleave(configs, ctx.repeat, (c) => point(c, ctx), ctx.progress, 'metadata-size');
    const pts = configs.map((c) => {
      const rs = res.get(c)!;
      return { ...rs[0], metadataBlocks: rs.map((r) => r.metadataBlocks).sort((a, b) => a - b)[Math.floor(rs.length / 2)] };
    });
    const v1x = pdataTools() ? host.run(pdataTools()!, ['thin_metadata_size', '-V']).stdout.trim() : undefined;
    const row = (p: MetadataPoint): Row => ({
      'mapped blocks': p.mapped, snapshots: p.snapshots, 'total mappings': p.totalMappings,
      'measured MiB': p.metadataBlocks * MD_BLOCK / MiB, 'measured blocks': p.metadataBlocks,
      'thin_metadata_size 0.9 MiB': mibOr(toolEstimate('0.9', p.mapped * CHUNK, CHUNK, p.snapshots + 1)),
      'thin_metadata_size 1.x MiB': mibOr(toolEstimate('1.x', p.mapped * CHUNK, CHUNK, p.snapshots + 1)),
      'rule of thumb MiB': ruleOfThumbBytes(p.mapped * CHUNK, CHUNK) / MiB,
      'bytes per mapping': p.metadataBlocks * MD_BLOCK / p.totalMappings,
    });
    const mappedRows = pts.filter((p) => p.series === 'mapped blocks').map(row);
    const snapRows = pts.filter((p) => p.series === 'snapshots').map(row);
    const long = (rows: Row[], x: string) => rows.flatMap((r) => ['measured MiB', 'thin_metadata_size 0.9 MiB', 'thin_metadata_size 1.x MiB', 'rule of thumb MiB']
      .filter((k) => typeof r[k] === 'number').map((k) => ({ [x]: r[x], source: k.replace(' MiB', ''), MiB: r[k] })));
    // The 100G question.
    const blocks100g = 100 * GiB / CHUNK;
    const mp = pts.filter((p) => p.series === 'mapped blocks');
    const f = fit(mp.map((p) => p.mapped), mp.map((p) => p.metadataBlocks * MD_BLOCK));
    const extrapolated = f.a + f.b * blocks100g;
    const sp = pts.filter((p) => p.series === 'snapshots');
    const fs1 = fit(sp.map((p) => p.snapshots), sp.map((p) => p.metadataBlocks * MD_BLOCK));
    const answerRows: Row[] = [
      { estimate: 'measured, extrapolated', MiB: extrapolated / MiB },
      { estimate: 'rule of thumb (48 B/block)', MiB: ruleOfThumbBytes(100 * GiB, CHUNK) / MiB },
      { estimate: 'thin_metadata_size 0.9, 1 thin', MiB: mibOr(toolEstimate('0.9', 100 * GiB, CHUNK, 1)) },
      { estimate: 'thin_metadata_size 0.9, 1000 thins', MiB: mibOr(toolEstimate('0.9', 100 * GiB, CHUNK, 1000)) },
      { estimate: 'thin_metadata_size 1.x, 1000 thins', MiB: mibOr(toolEstimate('1.x', 100 * GiB, CHUNK, 1000)) },
      { estimate: "Docker default", MiB: 2048 },
    ];
    const biggest = Math.max(...answerRows.slice(0, 5).map((r) => (typeof r.MiB === 'number' && Number.isFinite(r.MiB) ? r.MiB : 0)));
    const perMapping = f.b;
    return {
      params: { 'largest mapped data': ctx.size, 'data block size': '64 KiB', 'mapped-block points': g.mapped.join(', '), 'snapshot points': g.snaps.join(', '), 'mapped blocks under the snapshots': g.snapBase, 'share each snapshot rewrites': g.divergeShare, repeat: ctx.repeat, quick: ctx.quick, 'thin_metadata_size 1.x': v1x ?? 'absent' },
      method: [
        'Each point is a fresh loop-lvm pool (64 KiB chunks, zeroing off so a 4 KiB write maps a chunk). Mapped-blocks series: one thin device with N chunks mapped. Snapshot series: a device with the given mapped chunks and S snapshots of it, each rewriting its own 5% of the chunks (spread over the device).',
        'Measured = used metadata blocks x 4 KiB from the pool status after a commit (superblock, space maps, mapping and device-details trees).',
        'thin_metadata_size is run with -b 64k -s <mapped data size> -m <snapshots + 1> -u b -n. Rule of thumb: 48 bytes per data block, at least 2 MiB (the kernel\'s thin-provisioning documentation).',
      ],
      findings: [
        `Measured: ${(perMapping).toFixed(1)} bytes of metadata per mapped block (slope), against the rule of thumb's 48.`,
        `A 100G pool of 64K chunks (${blocks100g} blocks), fully mapped: ${(extrapolated / MiB).toFixed(0)} MiB extrapolated from the measurements; the largest estimate is ${biggest.toFixed(0)} MiB, so Docker's 2G default is about ${(2048 / biggest).toFixed(0)}x that: oversized for plain provisioning, room for heavy snapshot divergence.`,
        `Each snapshot that rewrites ${g.divergeShare * 100}% of ${g.snapBase} mapped blocks, spread over the device, adds about ${(fs1.b / KiB).toFixed(0)} KiB of metadata (slope over the snapshot series): ${(fs1.b / g.snapBase).toFixed(1)} bytes per block of its origin, because scattered writes shadow nearly every leaf of its mapping tree.`,
        snapFinding(sp, fs1.b / g.snapBase, blocks100g, extrapolated),
      ],
      sections: [
        { title: 'Metadata vs mapped blocks', charts: [
          { id: 'vs-mapped', title: 'Metadata vs mapped data blocks (no snapshots)', mark: 'line', x: { field: 'mapped blocks', title: 'mapped data blocks (64 KiB)' }, y: { field: 'MiB', title: 'metadata (MiB)' }, series: { field: 'source', title: 'source' }, data: long(mappedRows, 'mapped blocks') },
        ], tables: [{ title: 'Mapped-blocks series', columns: Object.keys(mappedRows[0]), rows: mappedRows.map((r) => Object.values(r)) }] },
        { title: 'Metadata vs snapshot count', charts: [
          { id: 'vs-snapshots', title: `Metadata vs snapshots (${g.snapBase} mapped blocks, each snapshot rewrites ${g.divergeShare * 100}%)`, mark: 'line', x: { field: 'snapshots', title: 'snapshots' }, y: { field: 'MiB', title: 'metadata (MiB)' }, series: { field: 'source', title: 'source' }, data: long(snapRows, 'snapshots') },
        ], tables: [{ title: 'Snapshot series', columns: Object.keys(snapRows[0]), rows: snapRows.map((r) => Object.values(r)) }] },
        { title: "Is Docker's 2G default oversized for a 100G pool with 64K chunks?", charts: [
          { id: 'answer-100g', title: 'Metadata for a 100 GiB pool, 64 KiB chunks', mark: 'bar', x: { field: 'estimate', title: 'estimate' }, y: { field: 'MiB', title: 'MiB' }, data: answerRows },
        ] },
      ],
    };
  },
};

function snapFinding(sp: MetadataPoint[], bytesPerOriginBlock: number, blocks100g: number, base100g: number): string {
  const last = sp[sp.length - 1];
  const est = toolEstimate('0.9', last.mapped * CHUNK, CHUNK, last.snapshots + 1);
  const measured = last.metadataBlocks * MD_BLOCK;
  const perSnap100g = bytesPerOriginBlock * blocks100g;
  const fit = Math.floor((2 * GiB - base100g) / perSnap100g);
  const vsTool = est ? ` thin_metadata_size -m ${last.snapshots + 1} estimates ${(est / MiB).toFixed(2)} MiB for that point, ${(measured / est).toFixed(0)}x less than measured: it assumes snapshots keep sharing their trees.` : '';
  return `With ${last.snapshots} such snapshots the pool used ${(measured / MiB).toFixed(1)} MiB of metadata.${vsTool} Extrapolated to a fully mapped 100G pool, each such snapshot costs about ${(perSnap100g / MiB).toFixed(0)} MiB, so 2G holds about ${fit} of them: the default is generous for plain layers, not for many containers that write all over their device.`;
}

const mibOr = (b: number | undefined) => (b === undefined ? undefined : b / MiB);

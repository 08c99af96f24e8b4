/** A gRPC client of thinsim's snapshotter, written as containerd's proxy client calls it, and pool set-up for the containerd tests. */
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { loadSnapshotsProto, snapshotsService, loopMissing } from '../../src/containerd';
import { findTool } from '../../src/tools';

export const MiB = 2 ** 20;

/** Why the tests that attach loop devices cannot run here, or undefined. */
export function attachMissing(): string | undefined {
  const why = loopMissing();
  if (why) return why;
  for (const tool of ['nbdfuse', 'losetup', 'mkfs.ext4', 'mount']) if (!findTool(tool)) return `${tool} is not installed`;
  return undefined;
}

export async function createPool(dir: string, dataSize = 1024 * MiB): Promise<string> {
  const p = Pool.create(dir, { dataSize, metadataSize: 16 * MiB });
  await p.close();
  return dir;
}

export interface GrpcFailure extends Error { code: grpc.status; details: string }

/** The Snapshots client: each RPC as a promise; List gathers the stream. */
export class SnapshotsClient {
  private readonly c: grpc.Client & Record<string, any>;

  constructor(socket: string) {
    const Ctor = snapshotsService(loadSnapshotsProto());
    this.c = new Ctor(`unix:${socket}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * MiB }) as any;
  }

  call<T = any>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) => this.c[method](req, (e: grpc.ServiceError | null, v: T) => (e ? reject(e) : resolve(v))));
  }

  list(filters: string[] = []): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const out: any[] = [];
      const s = this.c.List({ snapshotter: 'thinsim', filters });
      s.on('data', (m: { info: any[] }) => out.push(...m.info));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.c.close();
  }
}

/** The gRPC failure of `p` (fails the test if it succeeds). */
export async function grpcFailure(p: Promise<unknown>): Promise<GrpcFailure> {
  try {
    await p;
  } catch (e) {
    return e as GrpcFailure;
  }
  throw new Error('expected the call to fail');
}

export const metadataFile = (poolDir: string) => path.join(poolDir, 'metadata');

/** Mount points under `dir` (to be sure nothing is left mounted). */
export function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && (m === dir || m.startsWith(dir + '/')));
}

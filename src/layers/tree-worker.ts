/**
 * The tree worker: a child process that does thinsim's work inside a mounted layer
 * (apply a layer tar, list, read, write, Docker's init layer), sent by tree.ts.
 *
 * Contract: one request per process, over the IPC channel: `{ op, args }` in; `{ progress }`
 * messages while it works; then `{ result }` or `{ error: { code, message, details } }`, and
 * the process exits. It serves no mount, so its synchronous fs calls into the tree cannot
 * wait on itself: the NBD server behind the mount runs in the parent, on a thread pool and
 * an event loop this process never shares.
 */
import { ThinError } from '../errors';
import { applyLayer, type ApplyOptions, type LayerSource } from './apply';
import { listTree, readTreeFile, readTreeFileCount, setupInitLayer, writeTreeFile } from './tree-ops';

export interface TreeRequest { op: string; args: unknown[] }

type Send = (m: unknown) => void;

async function run(req: TreeRequest, send: Send): Promise<unknown> {
  const a = req.args;
  switch (req.op) {
    case 'apply': {
      const opts = (a[2] ?? {}) as ApplyOptions;
      let last = 0;
      return applyLayer(a[0] as LayerSource, a[1] as string, {
        ...opts,
        onProgress: (n) => { if (n - last >= 1 << 20) { last = n; send({ progress: n }); } },
      });
    }
    case 'list': return listTree(a[0] as string);
    case 'read': return readTreeFile(a[0] as string, a[1] as string, a[2] as number | undefined, a[3] as number | undefined);
    case 'write': return writeTreeFile(a[0] as string, a[1] as string, a[2] as Uint8Array, a[3] as { offset?: number; append?: boolean });
    case 'readCount': return readTreeFileCount(a[0] as string, a[1] as string);
    case 'init': return setupInitLayer(a[0] as string);
    default: throw new ThinError('E_INVARIANT', `the tree worker has no operation "${req.op}"`);
  }
}

if (require.main === module && process.send) {
  const send: Send = (m) => process.send!(m);
  process.once('message', (req: TreeRequest) => {
    run(req, send).then(
      (result) => send({ result }),
      (e: unknown) => {
        const err = e instanceof ThinError ? { code: e.code, message: e.message, details: e.details }
          : { code: 'E_IO', message: e instanceof Error ? e.message : String(e), details: { errno: (e as NodeJS.ErrnoException)?.code } };
        send({ error: err });
      },
    ).finally(() => process.disconnect());
  });
}

/**
 * List replies with bounded memory, whatever the clients do.
 *
 * Contract:
 * - At most `slots` List calls hold a list of snapshot infos at once, server-wide; the
 *   others wait for a slot holding only their request (a call cancelled while waiting
 *   never starts). So the infos in memory are at most `slots` lists, however many
 *   connections and streams clients open.
 * - Replies go in batches of at most 100 infos and about BATCH_BYTES of labels, names
 *   and parents, one written at a time: the next only once HTTP/2 has sent the last
 *   (its write callback). When that does not happen at once, the call drops its list and
 *   its slot and waits holding only the names it has sent; once the batch is sent it
 *   lists again and goes on with the snapshots it has not sent. So each
 *   snapshot is sent at most once; one made or removed during a long List may or may
 *   not appear (containerd's Walk reads one snapshot of its database instead).
 * - A client that takes no batch for `stallMs` loses the call (RESOURCE_EXHAUSTED,
 *   "E_STALLED: ..."): a client that never reads holds one batch and the names sent, not
 *   the list, and never a slot.
 */
import * as grpc from '@grpc/grpc-js';

/** Bytes of one reply message's infos, about (the encoding adds a few bytes per field). */
export const BATCH_BYTES = 256 * 1024;
const BATCH_INFOS = 100;

interface WireInfo { name?: string; parent?: string; labels?: Record<string, string> }

function weight(w: WireInfo): number {
  let n = 64 + (w.name?.length ?? 0) + (w.parent?.length ?? 0);
  for (const [k, v] of Object.entries(w.labels ?? {})) n += k.length + v.length + 8;
  return n;
}

class Stalled extends Error {}

export class ListStreams {
  private busy = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly slots: number, private readonly stallMs: number) {}

  /** Lists in flight now (building or writing). */
  get active(): number {
    return this.busy;
  }

  /** Answer `call` with `list()`'s infos (converted by `wire`, named by `name`), within the caps above. */
  async serve<T>(call: grpc.ServerWritableStream<unknown, object>, list: () => Promise<T[]>, wire: (t: T) => WireInfo, name: (t: T) => string): Promise<void> {
    const sent = new Set<string>();
    try {
      for (;;) {
        if (!(await this.acquire(call))) return;
        let pending: Promise<void> | undefined;
        try {
          const infos = (await list()).filter((i) => !sent.has(name(i)));
          let batch: WireInfo[] = [];
          let bytes = 0;
          // Write the batch; true if the client took it at once (else `pending` waits for it).
          const flush = async (): Promise<boolean> => {
            if (call.cancelled) throw new Stalled('the client cancelled the call');
            const written = new Promise<void>((resolve) => call.write({ info: batch }, () => resolve()));
            batch = [];
            bytes = 0;
            if (await Promise.race([written.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))])) return true;
            pending = written;
            return false;
          };
          for (const info of infos) {
            const w = wire(info);
            const n = weight(w);
            if (batch.length && (batch.length >= BATCH_INFOS || bytes + n > BATCH_BYTES) && !(await flush())) break;
            batch.push(w);
            bytes += n;
            sent.add(name(info));
          }
          if (!pending && batch.length) await flush();
        } finally {
          this.release();
        }
        if (!pending) break;
        await this.taken(call, pending);
      }
      if (!call.cancelled) call.end();
    } catch (e) {
      if (!(e instanceof Stalled)) throw e;
      if (!call.cancelled) call.emit('error', Object.assign(new Error(''), { code: grpc.status.RESOURCE_EXHAUSTED, details: `E_STALLED: ${e.message}` }));
    }
  }

  /** A slot, or false if the call was cancelled while waiting for one. */
  private acquire(call: grpc.ServerWritableStream<unknown, object>): Promise<boolean> {
    if (this.busy < this.slots) {
      this.busy++;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const go = () => {
        call.off('cancelled', gone);
        this.busy++;
        resolve(true);
      };
      const gone = () => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(false);
      };
      this.waiting.push(go);
      call.once('cancelled', gone);
    });
  }

  private release(): void {
    this.busy--;
    const next = this.waiting.shift();
    if (next) next();
  }

  /** Wait until the client has taken the last batch (`written`), up to stallMs. */
  private taken(call: grpc.ServerWritableStream<unknown, object>, written: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const gone = () => { clearTimeout(timer); reject(new Stalled('the client cancelled the call')); };
      const timer = setTimeout(() => {
        call.off('cancelled', gone);
        reject(new Stalled(`the client took no List reply for ${this.stallMs} ms; the call is dropped`));
      }, this.stallMs);
      call.once('cancelled', gone);
      void written.then(() => { clearTimeout(timer); call.off('cancelled', gone); resolve(); });
    });
  }
}

/**
 * Ordering primitives for the data path.
 *
 * - KeyedMutex: a FIFO lock per key (a chunk). Requests on one chunk run one at a
 *   time in the order they were issued; different chunks run in parallel. Idle
 *   keys cost nothing.
 * - Gate: shared/exclusive. Data-path operations hold it shared; operations that
 *   need the device or pool quiet (snapshot, delete, commit) take it exclusive,
 *   which waits for the shared holders to drain and holds new ones back. Waiters
 *   are served in arrival order, so neither side starves.
 */

export type Release = () => void;

export class KeyedMutex<K> {
  private readonly tails = new Map<K, Promise<void>>();

  async lock(key: K): Promise<Release> {
    const prev = this.tails.get(key);
    let release!: Release;
    const mine = new Promise<void>((r) => { release = r; });
    const tail = prev ? prev.then(() => mine) : mine;
    this.tails.set(key, tail);
    if (prev) await prev;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }

  /** Nobody holds or waits for `key`: a lock taken now would be granted at once. */
  isFree(key: K): boolean {
    return !this.tails.has(key);
  }

  get size(): number {
    return this.tails.size;
  }
}

interface Waiter { exclusive: boolean; go: () => void }

export class Gate {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Waiter[] = [];

  async acquireShared(): Promise<Release> {
    if (!this.exclusive && this.queue.length === 0) {
      this.shared++;
    } else {
      await new Promise<void>((go) => this.queue.push({ exclusive: false, go }));
    }
    let done = false;
    return () => { if (!done) { done = true; this.shared--; this.pump(); } };
  }

  async acquireExclusive(): Promise<Release> {
    if (!this.exclusive && this.shared === 0 && this.queue.length === 0) {
      this.exclusive = true;
    } else {
      await new Promise<void>((go) => this.queue.push({ exclusive: true, go }));
    }
    let done = false;
    return () => { if (!done) { done = true; this.exclusive = false; this.pump(); } };
  }

  /** acquireShared() would be granted at once (no exclusive holder, nobody queued). */
  get freeForShared(): boolean {
    return !this.exclusive && this.queue.length === 0;
  }

  get busy(): boolean {
    return this.exclusive || this.shared > 0;
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.exclusive) {
      const w = this.queue[0];
      if (w.exclusive) {
        if (this.shared > 0) return;
        this.queue.shift();
        this.exclusive = true;
        w.go();
        return;
      }
      this.queue.shift();
      this.shared++;
      w.go();
    }
  }
}

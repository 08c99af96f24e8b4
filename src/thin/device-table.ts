/**
 * The pool's devices between commits, as ThinMetadata keeps them: each device's
 * details (in memory for the whole transaction, written to the details tree at
 * commit), the cached root of its mapping subtree, and whether its top-level path
 * was already made writable in this transaction.
 *
 * Contract: ids are checked (0..2^24-1) where a device is made; an unknown id is
 * E_NO_DEVICE, a taken one E_DEVICE_EXISTS. `flush` writes exactly the details that
 * changed or went away since the last commit, in ascending id order; `committed`
 * and `load` start a new transaction. Details are updated in place (no object per
 * mapping on the insert path).
 */
import { ThinError } from '../errors';
import type { BTree } from '../pdata/btree/btree';
import type { DeviceDetails } from './format/device-details';

export const MAX_DEVICE_ID = 2 ** 24 - 1;

/** What ThinMetadata keeps per device between commits. */
export interface DeviceState {
  /** Details as of now (written to the details tree at commit when `changed`). */
  details: DeviceDetails;
  /** Root of the device's mapping subtree, once looked up (or made). */
  root: number | undefined;
  /** The top-level path to the subtree was shadowed in this transaction. */
  prepared: boolean;
  /** The details differ from the committed ones (the device is in `changed`). */
  changed: boolean;
}

export class DeviceTable {
  private readonly states = new Map<number, DeviceState>();
  /** Devices whose details changed in this transaction (their `changed` flag is set). */
  private readonly changed = new Set<number>();
  private readonly deleted = new Set<number>();

  /** Device ids in ascending order. */
  ids(): number[] {
    return [...this.states.keys()].sort((a, b) => a - b);
  }

  has(id: number): boolean {
    return this.states.has(id);
  }

  /** The state of `id`; E_NO_DEVICE if it does not exist. */
  get(id: number): DeviceState {
    const st = this.states.get(id);
    if (st === undefined) throw noDevice(id);
    return st;
  }

  /** Throw unless `id` is a valid id that no device has. */
  checkNew(id: number): void {
    checkDeviceId(id);
    if (this.states.has(id)) throw new ThinError('E_DEVICE_EXISTS', `thin device ${id} already exists`, { device: id });
  }

  /** New details for `id` (a new device when `root` is given: its subtree root). */
  setDetails(id: number, d: DeviceDetails, root?: number): void {
    let st = this.states.get(id);
    if (st === undefined) {
      st = { details: d, root, prepared: false, changed: false };
      this.states.set(id, st);
    } else {
      st.details = d;
      if (root !== undefined) st.root = root;
    }
    st.changed = true;
    this.changed.add(id);
  }

  countMapped(id: number, st: DeviceState, by: number): void {
    st.details.mappedBlocks += by;
    if (!st.changed) {
      st.changed = true;
      this.changed.add(id);
    }
  }

  delete(id: number): void {
    if (!this.states.delete(id)) throw noDevice(id);
    this.changed.delete(id);
    this.deleted.add(id);
  }

  /** Details changed or removed since the last commit. */
  get dirty(): boolean {
    return this.changed.size > 0 || this.deleted.size > 0;
  }

  /** Write the changed and removed details into `tree` at `root`; returns the new root. */
  flush(tree: BTree<DeviceDetails>, root: number): number {
    for (const id of [...this.deleted].sort((a, b) => a - b)) {
      if (!this.states.has(id)) root = tree.remove(root, id).root;
    }
    for (const id of [...this.changed].sort((a, b) => a - b)) root = tree.insert(root, id, this.states.get(id)!.details);
    return root;
  }

  /** The details were committed: a new transaction starts. */
  committed(): void {
    this.changed.clear();
    this.deleted.clear();
    for (const st of this.states.values()) {
      st.changed = false;
      st.prepared = false;
    }
  }

  /** Forget everything and take the committed details (open, abort). */
  load(details: Iterable<[number, DeviceDetails]>): void {
    this.states.clear();
    this.changed.clear();
    this.deleted.clear();
    for (const [id, d] of details) this.states.set(id, { details: d, root: undefined, prepared: false, changed: false });
  }
}

export function checkDeviceId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > MAX_DEVICE_ID) {
    throw new ThinError('E_INVALID', `thin device id ${id} is outside 0..${MAX_DEVICE_ID} (24 bits)`, { device: id });
  }
}

export function noDevice(id: number): ThinError {
  return new ThinError('E_NO_DEVICE', `thin device ${id} does not exist`, { device: id });
}

/**
 * Docker's transaction protocol for creating and deleting thin devices, over the
 * records of ./records.ts.
 *
 * Contract:
 * - Every device creation or deletion follows Docker's four steps, each durable before
 *   the next: (1) open a transaction (open_transaction_id = pool transaction id + 1,
 *   with the device hash and id) in transaction-metadata; (2) the pool message
 *   (create_thin / create_snap / delete); (3) write (or remove) the device record and
 *   thinsim's index entry; (4) set_transaction_id old -> new on the pool. `recover()`
 *   (run when a store opens read-write) rolls back an unfinished transaction
 *   (open_transaction_id > the pool's transaction id) as Docker does: delete the
 *   device if it exists, remove its record (and index entry), remove the transaction
 *   file. A deletion caught half way (its discards included) is thereby completed; a
 *   creation is undone.
 * - Crash points `layers:create:N` and `layers:delete:N` (N = 1..4) follow step N
 *   (src/crash-points.ts; only a test's hook acts on them).
 */
import { crashPoint } from '../crash-points';
import { ThinError } from '../errors';
import type { Pool } from '../pool/pool';
import { BASE_RECORD, MAX_DEVICE_ID, type DevInfo, type DockerRecords, type LayerRecord, type TransactionMetadata } from './records';


export interface Recovery {
  rolledBack?: TransactionMetadata;
  /** Index entries dropped because their device record was gone. */
  droppedIndex: string[];
  /** layerdb directories removed because no committed layer named them. */
  droppedLayerdb: string[];
  /** Scratch layers removed because the process that owned them is gone (LayerStore.open). */
  abandoned?: string[];
  /** Scratch layers kept because their owner's work had reached its commit point (LayerStore.open). */
  adopted?: string[];
  /** Temporary files and directories of writes killed mid-way, removed (durable.ts sweepInterrupted; LayerStore.open). */
  interrupted?: string[];
}

export class DeviceTransactions {
  constructor(private readonly pool: Pool, private readonly records: DockerRecords) {}

  /** Docker's getNextFreeDeviceID: advance next_device_id (24-bit wrap) past every id in use. */
  private allocateDeviceId(): number {
    const used = new Set<number>(this.pool.devices());
    for (const d of this.records.listDevInfos().values()) used.add(d.device_id);
    const meta = this.records.readDeviceSet();
    let id = meta.next_device_id;
    for (let i = 0; i <= MAX_DEVICE_ID; i++) {
      id = (id + 1) & MAX_DEVICE_ID;
      if (!used.has(id)) {
        this.records.writeDeviceSet({ ...meta, next_device_id: id });
        return id;
      }
    }
    throw new ThinError('E_NO_DEVICE_ID', 'no free thin device id is left (all 2^24 are taken): remove layers or devices you no longer need');
  }

  private open(hash: string, deviceId: number): { current: number; next: number } {
    const current = this.pool.status().transactionId;
    const next = current + 1;
    this.records.writeTransaction({ open_transaction_id: next, device_hash: hash, device_id: deviceId });
    return { current, next };
  }

  /**
   * Create a thin device (no origin) or a snapshot of `origin`, record it under `hash`,
   * and in step 3 enter `layer` (the layer it becomes) in thinsim's index. Returns the record.
   */
  async create(hash: string, size: number, origin: number | undefined, layer?: LayerRecord): Promise<DevInfo> {
    if (this.records.readDevInfo(hash)) throw new ThinError('E_DEVICE_EXISTS', `a device record for ${hash || BASE_RECORD} already exists`, { hash });
    const deviceId = this.allocateDeviceId();
    const { current, next } = this.open(hash, deviceId);
    crashPoint('layers:create:1');
    try {
      if (origin === undefined) await this.pool.createThin(deviceId, size);
      else await this.pool.createSnap(deviceId, origin, size);
    } catch (e) {
      await this.rollback();
      throw e;
    }
    crashPoint('layers:create:2');
    const info: DevInfo = { device_id: deviceId, size, transaction_id: next, initialized: false, deleted: false };
    try {
      this.records.writeDevInfo(hash, info);
      if (layer) {
        const idx = this.records.readIndex();
        idx.layers[layer.name] = layer;
        this.records.writeIndex(idx);
      }
    } catch (e) {
      await this.rollback();
      throw e;
    }
    crashPoint('layers:create:3');
    await this.pool.setTransactionId(current, next);
    crashPoint('layers:create:4');
    return info;
  }

  /**
   * Delete the device recorded under `hash`, its record, and (step 3) the index entry of
   * `layer`. `discard` (Docker's dm.blkdiscard) runs inside the transaction, after step 1:
   * a crash during it leaves an open transaction, which the next open completes (the
   * device is deleted), never a half-discarded device that records still name.
   */
  async delete(hash: string, layer?: string, discard?: (info: DevInfo) => Promise<void>): Promise<void> {
    const info = this.records.readDevInfo(hash);
    if (!info) throw new ThinError('E_NOT_FOUND', `no device record for ${hash || BASE_RECORD}`, { hash });
    const { current, next } = this.open(hash, info.device_id);
    crashPoint('layers:delete:1');
    if (discard && this.pool.devices().includes(info.device_id)) await discard(info);
    if (this.pool.devices().includes(info.device_id)) await this.pool.deleteDevice(info.device_id);
    crashPoint('layers:delete:2');
    this.records.removeDevInfo(hash);
    if (layer !== undefined) {
      const idx = this.records.readIndex();
      delete idx.layers[layer];
      this.records.writeIndex(idx);
    }
    crashPoint('layers:delete:3');
    await this.pool.setTransactionId(current, next);
    crashPoint('layers:delete:4');
  }

  /**
   * Docker's rollbackTransaction: delete the device if it exists, remove its record and
   * the transaction file; thinsim also drops its index entries for the same cache-id.
   */
  private async rollback(): Promise<TransactionMetadata | undefined> {
    const t = this.records.readTransaction();
    if (!t) return undefined;
    if (this.pool.devices().includes(t.device_id)) await this.pool.deleteDevice(t.device_id);
    this.records.removeDevInfo(t.device_hash);
    const idx = this.records.readIndex();
    let changed = false;
    for (const [k, v] of Object.entries(idx.layers)) {
      if (v.cacheId === t.device_hash) { delete idx.layers[k]; changed = true; }
    }
    if (changed) this.records.writeIndex(idx);
    this.records.removeTransaction();
    return t;
  }

  /**
   * At open: roll back an unfinished transaction (Docker's processPendingTransaction),
   * then drop index entries without a device record and layerdb directories that no
   * committed layer names (a crash inside commit or remove leaves those).
   */
  async recover(): Promise<Recovery> {
    const out: Recovery = { droppedIndex: [], droppedLayerdb: [] };
    const t = this.records.readTransaction();
    const poolTid = this.pool.status().transactionId;
    if (t && t.open_transaction_id > poolTid) out.rolledBack = await this.rollback();
    const records = this.records.listDevInfos();
    const idx = this.records.readIndex();
    let changed = false;
    for (const [k, v] of Object.entries(idx.layers)) {
      const d = records.get(v.cacheId);
      if (!d || !this.pool.devices().includes(d.device_id)) { delete idx.layers[k]; out.droppedIndex.push(k); changed = true; }
    }
    if (changed) this.records.writeIndex(idx);
    const named = new Map<string, string>();
    for (const v of Object.values(idx.layers)) if (v.kind === 'committed' && v.chainId) named.set(v.chainId.slice(7), v.cacheId);
    for (const dir of this.records.listLayerdb()) {
      const e = /^[0-9a-f]{64}$/.test(dir) ? this.records.readLayerdb(dir) : undefined;
      if (!e || named.get(dir) !== e.cacheId) { this.records.removeLayerdb(dir); out.droppedLayerdb.push(dir); }
    }
    return out;
  }
}

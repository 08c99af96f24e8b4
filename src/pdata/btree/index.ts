/** The persistent btree: see btree.ts for the contract. */
export { BTree, KEY_END } from './btree';
export type { BTreeOptions, LeafVisitor, NodeVisitor } from './btree';
export { MultiLevelBTree } from './multi-level';
export { blockRefValue, u32Value, u64Value } from './value-type';
export type { SubtreeOwner, ValueType } from './value-type';
export {
  BTREE_NODE_SALT, btreeNodeValidator, checkNodeHeader, INTERNAL_NODE, LEAF_NODE, MAX_BTREE_DEPTH,
  maxEntriesFor, NODE_HEADER_SIZE,
} from './node';

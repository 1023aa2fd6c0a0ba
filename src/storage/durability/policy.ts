/**
 * When an append counts as stored:
 * - `fsync`: after the node-wide journal that holds it was fdatasynced (survives power loss);
 * - `os`: after write() returned (survives kill -9, not power loss; research finding 1);
 * - `none`: at once; written to the page cache in the next round, for transient data.
 */
export type Durability = 'fsync' | 'os' | 'none';

export const DURABILITY_VALUES: readonly Durability[] = ['fsync', 'os', 'none'];

/**
 * The definitions store: vhosts, exchanges, queues, bindings, users, permissions, policies and
 * consumer-group offsets, as a two-level map kind -> key -> JSON value.
 *
 * Every implementation keeps the same contract (test/contract/meta-store.contract.test.ts):
 * - put/delete change the state synchronously, so a get right after sees the change; the
 *   returned promise resolves once the change is as durable as the store promises.
 * - Values are stored as their JSON round trip and handed back deep-frozen. A caller that
 *   mutates the object it passed to put cannot change the store behind its back, and a value
 *   read back after a restart is the same as one read before it (a Date becomes a string in
 *   both cases, not only after a reopen).
 */

export interface MetaStore {
  /** The current value, or undefined. */
  get<T = unknown>(kind: MetaKind, key: string): T | undefined;
  /** A copy of every key and value of one kind, in insertion order. */
  all<T = unknown>(kind: MetaKind): Map<string, T>;
  /** Resolves once the change is durable; rejects if the store is closed or failed. */
  put(kind: MetaKind, key: string, value: unknown): Promise<void>;
  /**
   * Deleting a missing key writes nothing; its promise still resolves, and no earlier than the
   * changes already accepted, so resolutions always come in call order.
   */
  delete(kind: MetaKind, key: string): Promise<void>;
  /** Counters for tests and metrics. */
  stats(): MetaStoreStats;
  /** Waits for every accepted change to be durable, then releases files. Idempotent. */
  close(): Promise<void>;
}

/** Namespaces the broker uses; any non-empty string is accepted. */
export type MetaKind =
  | 'vhost'
  | 'exchange'
  | 'queue'
  | 'binding'
  | 'user'
  | 'permission'
  | 'policy'
  | 'offset'
  | (string & {});

export interface MetaStoreStats {
  /** Write rounds completed (each one write plus, under 'fsync', one fdatasync). */
  rounds: number;
  /** Change records made durable. */
  records: number;
  /** Snapshots written (the log was compacted). */
  compactions: number;
}

/** What recovery dropped instead of throwing. All zero on a clean open. */
export interface RecoveryReport {
  truncatedBytes: number;
  /** Record frames in the cut tail, found by following length fields; a trailing fragment counts as one. */
  droppedRecords: number;
  reason?: string;
  path?: string;
  /** Byte position in `path` where the cut was made. */
  position?: number;
  /** Leftover files deleted on open (an interrupted snapshot's tmp file). */
  removed: string[];
}

export type Durability = 'fsync' | 'os';

/** One change, as the log stores it. */
export type MetaChange =
  | { op: 'put'; kind: string; key: string; value: unknown }
  | { op: 'delete'; kind: string; key: string };

/** Throws a TypeError unless kind is a non-empty string and key a string (the default exchange is ""). */
export function checkKindKey(kind: unknown, key: unknown): void {
  if (typeof kind !== 'string' || kind.length === 0) throw new TypeError(`kind must be a non-empty string, got ${String(kind)}`);
  if (typeof key !== 'string') throw new TypeError(`key must be a string, got ${typeof key}`);
}

/** JSON text of a value, refusing what JSON cannot carry rather than storing undefined. */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`value is not JSON-serialisable: ${typeof value}`);
  return text;
}

/** Parses JSON text and deep-freezes the result, so stored values cannot be mutated in place. */
export function frozenFromJson(text: string): unknown {
  return deepFreeze(JSON.parse(text));
}

/** Freezes a parsed JSON value and everything in it. */
export function deepFreeze(v: unknown): unknown {
  if (v !== null && typeof v === 'object') {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** The in-memory state every implementation keeps; the file store rebuilds it on open. */
export class MetaState {
  readonly #kinds = new Map<string, Map<string, unknown>>();

  get(kind: string, key: string): unknown {
    return this.#kinds.get(kind)?.get(key);
  }
  has(kind: string, key: string): boolean {
    return this.#kinds.get(kind)?.has(key) ?? false;
  }
  all(kind: string): Map<string, unknown> {
    return new Map(this.#kinds.get(kind));
  }
  set(kind: string, key: string, value: unknown): void {
    let m = this.#kinds.get(kind);
    if (m === undefined) this.#kinds.set(kind, (m = new Map()));
    m.set(key, value);
  }
  delete(kind: string, key: string): boolean {
    const m = this.#kinds.get(kind);
    if (m === undefined || !m.delete(key)) return false;
    if (m.size === 0) this.#kinds.delete(kind);
    return true;
  }
  apply(change: MetaChange): void {
    if (change.op === 'put') this.set(change.kind, change.key, change.value);
    else this.delete(change.kind, change.key);
  }
  *entries(): IterableIterator<[kind: string, key: string, value: unknown]> {
    for (const [kind, m] of this.#kinds) for (const [key, value] of m) yield [kind, key, value];
  }
  get size(): number {
    let n = 0;
    for (const m of this.#kinds.values()) n += m.size;
    return n;
  }
}

/**
 * What delayed delivery and expiry need from storage: entries kept durably until a given
 * time, handed out in due order, browsable and counted per group (an exchange, a queue).
 * Implementations: FileScheduleStore (a schedule log plus an on-disk time index, with only
 * the near future in memory) and MemoryScheduleStore.
 *
 * Life of an entry: add() -> pending -> takeDue() hands it out ("taken") -> done(id) removes
 * it. A taken entry that could not be delivered goes back with release(id). cancel(id) removes
 * a pending or taken entry. Taken entries still count as pending (they are stored until done)
 * but takeDue() does not hand them out again.
 *
 * Durability (FileScheduleStore; docs in file-schedule-store.ts):
 * - add: stored per the store's policy once a flushed() called after it resolves.
 * - done/cancel: once a flushed() called after it resolves, the entry never comes back, not
 *   even after kill -9 ('os', 'fsync') or power loss ('fsync'). Before that it may.
 * - A done mark is never written before the commit round that follows the done() call has
 *   begun and the round in which done() was called has completed, so whatever the caller
 *   appended before calling done() (the fired message) is durable first: an entry is never
 *   lost, at worst fired twice (see file-schedule-store.ts for the exact window).
 */

export interface ScheduledEntry {
  /** Unique in the store, never reused; increases with add(). */
  id: number;
  /** Milliseconds since the epoch at which the entry is due. */
  dueAt: number;
  /** What the entry is counted under (for example the exchange name). */
  group: string;
  payload: Buffer;
}

export interface BrowseOptions {
  group?: string;
  limit: number;
  /** Only entries with dueAt >= fromDueAt (ties broken by `afterId`, exclusive). */
  fromDueAt?: number;
  /** With fromDueAt: skip entries due exactly at fromDueAt with an id <= afterId (paging). */
  afterId?: number;
}

export interface ScheduleStore {
  readonly name: string;
  /**
   * Stores an entry due at `dueAt`; returns its id. Synchronous; durable after flushed(). The
   * store may keep `payload` by reference (until it is written, or for good in memory): do not
   * change it afterwards.
   */
  add(dueAt: number, group: string, payload: Buffer): number;
  /** Resolves when every add, done and cancel before this call is stored per the policy. */
  flushed(): Promise<void>;
  /**
   * Hands out entries with dueAt <= now that are neither taken nor done, in due order (ties
   * by id), at most `max`. They stay stored until done(id), and are not handed out again
   * unless released (or the process restarts before done() was flushed).
   */
  takeDue(now: number, max: number): Promise<ScheduledEntry[]>;
  /**
   * When to call takeDue() next: never later than the earliest pending, untaken dueAt. It may
   * be earlier (the file store asks to be woken shortly before the next on-disk time bucket
   * is due, to load it), in which case takeDue() returns nothing yet. null when nothing is
   * pending.
   */
  nextDueAt(): number | null;
  /** The entry was fired: remove it. Unknown or already removed ids are ignored. */
  done(id: number): void;
  /** Removes a pending or taken entry; false if it was not there. */
  cancel(id: number): boolean;
  /** A taken entry goes back to pending (delivery failed); it is handed out again when due. */
  release(id: number): void;
  /** Pending entries (taken included), in `group` or in all. */
  count(group?: string): number;
  /** Pending entries per group (groups with none are left out). */
  groupCounts(): Map<string, number>;
  /** Pending entries in due order (ties by id), read from storage where needed. */
  browse(opts: BrowseOptions): Promise<ScheduledEntry[]>;
  close(): Promise<void>;
}

/** Compares (dueAt, id) pairs: the one due order every implementation follows. */
export function dueOrder(a: { dueAt: number; id: number }, b: { dueAt: number; id: number }): number {
  return a.dueAt - b.dueAt || a.id - b.id;
}

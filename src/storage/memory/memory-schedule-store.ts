/**
 * A ScheduleStore held in memory: for transient use, and the reference the contract suite
 * runs the file store against. Same semantics, no durability: flushed() resolves at once.
 */
import { dueOrder, type BrowseOptions, type ScheduledEntry, type ScheduleStore } from '../schedule/schedule-store.js';

interface Entry extends ScheduledEntry {
  taken: boolean;
}

export class MemoryScheduleStore implements ScheduleStore {
  readonly name: string;
  #entries = new Map<number, Entry>();
  #next = 0;
  #counts = new Map<string, number>();
  /** Pending, untaken entries in due order, sorted lazily. */
  #queue: Entry[] = [];
  #sorted = true;
  #closed = false;

  constructor(name: string) {
    this.name = name;
  }

  add(dueAt: number, group: string, payload: Buffer): number {
    if (this.#closed) throw new Error('schedule store is closed');
    if (!Number.isFinite(dueAt)) throw new RangeError(`dueAt must be a finite number, got ${dueAt}`);
    const id = this.#next++;
    const e: Entry = { id, dueAt, group, payload, taken: false };
    this.#entries.set(id, e);
    this.#counts.set(group, (this.#counts.get(group) ?? 0) + 1);
    this.#enqueue(e);
    return id;
  }

  #enqueue(e: Entry): void {
    const last = this.#queue[this.#queue.length - 1];
    if (last !== undefined && dueOrder(last, e) > 0) this.#sorted = false;
    this.#queue.push(e);
  }

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  async takeDue(now: number, max: number): Promise<ScheduledEntry[]> {
    if (this.#closed) throw new Error('schedule store is closed');
    if (!this.#sorted) {
      this.#queue.sort(dueOrder);
      this.#sorted = true;
    }
    const out: ScheduledEntry[] = [];
    let i = 0;
    for (; i < this.#queue.length && out.length < max; i++) {
      const e = this.#queue[i]!;
      if (e.dueAt > now) break;
      if (e.taken || !this.#entries.has(e.id)) continue;
      e.taken = true;
      out.push({ id: e.id, dueAt: e.dueAt, group: e.group, payload: e.payload });
    }
    this.#queue.splice(0, i);
    return out;
  }

  nextDueAt(): number | null {
    // From the sorted queue, not a scan of every entry: the runner asks after each add.
    if (!this.#sorted) {
      this.#queue.sort(dueOrder);
      this.#sorted = true;
    }
    const q = this.#queue;
    let i = 0;
    while (i < q.length && (q[i]!.taken || !this.#entries.has(q[i]!.id))) i++;
    if (i > 0) q.splice(0, i);
    return q.length > 0 ? q[0]!.dueAt : null;
  }

  done(id: number): void {
    this.cancel(id);
  }

  cancel(id: number): boolean {
    if (this.#closed) throw new Error('schedule store is closed');
    const e = this.#entries.get(id);
    if (e === undefined) return false;
    this.#entries.delete(id);
    const n = this.#counts.get(e.group)! - 1;
    if (n === 0) this.#counts.delete(e.group);
    else this.#counts.set(e.group, n);
    return true;
  }

  release(id: number): void {
    const e = this.#entries.get(id);
    if (e === undefined || !e.taken) return;
    e.taken = false;
    this.#enqueue(e);
  }

  count(group?: string): number {
    return group === undefined ? this.#entries.size : (this.#counts.get(group) ?? 0);
  }

  groupCounts(): Map<string, number> {
    return new Map(this.#counts);
  }

  async browse(opts: BrowseOptions): Promise<ScheduledEntry[]> {
    const from = opts.fromDueAt ?? -Infinity;
    const afterId = opts.afterId ?? -1;
    return [...this.#entries.values()]
      .filter((e) => (opts.group === undefined || e.group === opts.group) && (e.dueAt > from || (e.dueAt === from && e.id > afterId)))
      .sort(dueOrder)
      .slice(0, Math.max(0, opts.limit))
      .map((e) => ({ id: e.id, dueAt: e.dueAt, group: e.group, payload: e.payload }));
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

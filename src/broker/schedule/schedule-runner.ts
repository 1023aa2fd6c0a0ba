/**
 * Fires the entries of a ScheduleStore when they fall due: one timer for the earliest entry,
 * entries taken in due order in batches, each handed to `fire` and then marked done in the
 * same turn (the store's firing protocol: whatever `fire` appended is written no later than
 * the done mark, so an entry is never lost).
 */
import type { ScheduledEntry, ScheduleStore } from '../../storage/mod.js';
import type { PublishFlow } from '../publish-flow.js';

const BATCH = 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ScheduleRunner {
  readonly store: ScheduleStore;
  readonly #fire: (e: ScheduledEntry) => void;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #running = false;
  #closed = false;
  /** Called after each batch of fire() calls and their done() marks. */
  afterBatch: () => void = () => undefined;
  /** Called with an error the store gave while taking entries (logged by the owner). */
  onError: (err: unknown) => void = () => undefined;
  /** Told when entries are next due, so that publishers yield to firing (null: not told). */
  flow: PublishFlow | null = null;

  constructor(store: ScheduleStore, fire: (e: ScheduledEntry) => void, now: () => number = Date.now) {
    this.store = store;
    this.#fire = fire;
    this.#now = now;
  }

  /** Starts firing (call once the targets of the entries exist, after recovery). */
  start(): void {
    this.#arm();
  }

  add(dueAt: number, group: string, payload: Buffer): number {
    const id = this.store.add(dueAt, group, payload);
    if (dueAt < this.#timerAt) this.#arm();
    return id;
  }

  #arm(): void {
    if (this.#running) return; // #run arms again when it ends
    const next = this.#closed ? null : this.store.nextDueAt();
    if (next === null) {
      this.flow?.nextWorkAt(Infinity);
      return;
    }
    if (this.#timer !== null) {
      if (next >= this.#timerAt) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = next;
    this.flow?.nextWorkAt(next);
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, next - this.#now()));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      void this.#run();
    }, wait);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.flow?.nextWorkAt(-Infinity);
    let failed = false;
    try {
      for (;;) {
        const due = await this.store.takeDue(this.#now(), BATCH);
        if (this.#closed) return;
        for (const e of due) {
          try {
            this.#fire(e);
            this.store.done(e.id);
          } catch (err) {
            // Kept, and tried again a second later rather than in a tight loop.
            this.store.release(e.id);
            failed = true;
            this.onError(err);
          }
        }
        if (due.length > 0) this.afterBatch();
        if (due.length < BATCH) break;
        // A full batch: let publishers and deliveries run before the next one (publishers for a
        // slice, PublishFlow.nextWorkAt, so that a backlog of due entries does not starve them).
        this.flow?.nextWorkAt(this.#now());
        await new Promise<void>((r) => setImmediate(r));
        this.flow?.nextWorkAt(-Infinity);
      }
    } catch (err) {
      failed = true;
      this.onError(err);
    } finally {
      this.#running = false;
      if (failed) {
        this.flow?.nextWorkAt(Infinity);
        setTimeout(() => this.#arm(), 1000).unref();
      } else this.#arm();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.flow?.nextWorkAt(Infinity);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.store.close();
  }
}

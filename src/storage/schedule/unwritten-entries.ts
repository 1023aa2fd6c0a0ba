/**
 * The schedule entries appended to the log whose commit round has not ended yet, by id (ids
 * are consecutive log offsets). Parallel arrays with a moving head, not an object per entry:
 * every add passes through here. It holds what one or two rounds take, and each takeDue()
 * drops what the log has written since.
 */
import type { ScheduleGroups } from './schedule-groups.js';
import type { ScheduledEntry } from './schedule-store.js';

export class UnwrittenEntries {
  /** Id of the entry at #head. */
  #base = 0;
  #head = 0;
  #due: number[] = [];
  #gid: number[] = [];
  #payload: Buffer[] = [];

  /** `payload` is kept by reference: the caller must not change it (ScheduleStore.add). */
  add(id: number, dueAt: number, gid: number, payload: Buffer): void {
    if (this.#head === this.#due.length) {
      this.#reset(id);
    } else if (id !== this.#base + this.#due.length - this.#head) {
      // Not the next id (cannot happen with one log per store): start over rather than misindex.
      this.#reset(id);
    }
    this.#due.push(dueAt);
    this.#gid.push(gid);
    this.#payload.push(payload);
  }

  #reset(base: number): void {
    this.#base = base;
    this.#head = 0;
    this.#due.length = 0;
    this.#gid.length = 0;
    this.#payload.length = 0;
  }

  /** Forgets the entries below `writtenOffset` (the log can read them now). */
  dropBelow(writtenOffset: number): void {
    const n = Math.min(writtenOffset - this.#base, this.#due.length - this.#head);
    if (n <= 0) return;
    for (let i = this.#head; i < this.#head + n; i++) this.#payload[i] = EMPTY; // let them go now
    this.#head += n;
    this.#base += n;
    if (this.#head === this.#due.length) this.#reset(this.#base);
    else if (this.#head >= 4096 && this.#head * 2 >= this.#due.length) {
      this.#due.splice(0, this.#head);
      this.#gid.splice(0, this.#head);
      this.#payload.splice(0, this.#head);
      this.#head = 0;
    }
  }

  get size(): number {
    return this.#due.length - this.#head;
  }

  get(id: number, groups: ScheduleGroups): ScheduledEntry | undefined {
    const i = this.#head + (id - this.#base);
    if (id < this.#base || i >= this.#due.length) return undefined;
    return { id, dueAt: this.#due[i]!, group: groups.name(this.#gid[i]!), payload: this.#payload[i]! };
  }
}

const EMPTY = Buffer.alloc(0);

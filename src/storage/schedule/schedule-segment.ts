/**
 * What the schedule keeps per segment of its log: which entries are done (a bitmap, and the
 * append-only `.done` file of u32 offsets relative to the segment's base), and each entry's
 * group id (a Uint32Array, 4 bytes per entry), so that done() and cancel() can keep the
 * per-group counts exact without reading the entry back. A segment whose entries are all done,
 * with every done mark written, is deleted with its `.done` file.
 */

/** `.done` files are named by the base offset of their segment, like the segment itself. */
export function doneFileName(base: number): string {
  return `${String(base).padStart(20, '0')}.done`;
}
export function parseDoneFileName(name: string): number | null {
  const m = /^(\d{20})\.done$/.exec(name);
  return m ? Number(m[1]) : null;
}

export class ScheduleSegment {
  readonly base: number;
  /** Entries in the segment (grows while it is the log's last segment). */
  count = 0;
  /** Entries marked done in memory. */
  done = 0;
  /** Done marks whose write to the `.done` file has completed. */
  doneWritten = 0;
  #bits: Uint8Array = new Uint8Array(0);
  #groups: Uint32Array = new Uint32Array(0);
  /** Relative offsets marked done, waiting to be written. */
  pendingDone: number[] = [];
  fd = -1;
  /** Bytes in the `.done` file. */
  fileBytes = 0;

  constructor(base: number, count: number) {
    this.base = base;
    this.count = count;
    this.#reserve(count);
  }

  #reserve(n: number): void {
    if (n > this.#groups.length) {
      const cap = Math.max(n, Math.min(this.#groups.length * 2 || 1024, n + (1 << 20)));
      const g = new Uint32Array(cap);
      g.set(this.#groups);
      this.#groups = g;
    }
    const bytes = (n + 7) >>> 3;
    if (bytes > this.#bits.length) {
      const b = new Uint8Array(Math.max(bytes, (this.#groups.length + 7) >>> 3));
      b.set(this.#bits);
      this.#bits = b;
    }
  }

  /** A new entry at the end of the segment. */
  added(id: number, groupId: number): void {
    const rel = id - this.base;
    if (rel >= this.count) this.count = rel + 1;
    this.#reserve(this.count);
    this.#groups[rel] = groupId;
  }

  contains(id: number): boolean {
    return id >= this.base && id < this.base + this.count;
  }

  setGroup(id: number, groupId: number): void {
    this.#groups[id - this.base] = groupId;
  }
  group(id: number): number {
    return this.#groups[id - this.base]!;
  }

  isDone(id: number): boolean {
    const rel = id - this.base;
    return (this.#bits[rel >>> 3]! & (1 << (rel & 7))) !== 0;
  }

  /** Marks `id` done in memory; false if it already was. */
  mark(id: number): boolean {
    const rel = id - this.base;
    const i = rel >>> 3;
    const m = 1 << (rel & 7);
    if ((this.#bits[i]! & m) !== 0) return false;
    this.#bits[i] = this.#bits[i]! | m;
    this.done++;
    return true;
  }

  get complete(): boolean {
    return this.count > 0 && this.done >= this.count;
  }
}

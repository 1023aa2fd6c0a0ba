/**
 * A binary min-heap of (dueAt, id) pairs in two Float64Arrays: 16 bytes per entry and no
 * per-entry JS object, so a million entries due this hour cost 16 MB off the JS heap and
 * nothing for the garbage collector to trace. Ordered by dueAt, then id. Shrinks again after
 * a drain so that a burst does not pin its peak memory.
 */
const MIN_CAPACITY = 1024;

export class TimeHeap {
  #due: Float64Array = new Float64Array(MIN_CAPACITY);
  #id: Float64Array = new Float64Array(MIN_CAPACITY);
  #size = 0;

  get size(): number {
    return this.#size;
  }
  /** Bytes held by the arrays (for stats and tests). */
  get capacityBytes(): number {
    return this.#due.byteLength + this.#id.byteLength;
  }
  /** dueAt of the minimum; only meaningful when size > 0. */
  get topDue(): number {
    return this.#due[0]!;
  }
  get topId(): number {
    return this.#id[0]!;
  }

  push(dueAt: number, id: number): void {
    if (this.#size === this.#due.length) this.#resize(this.#due.length * 2);
    const due = this.#due;
    const ids = this.#id;
    let i = this.#size++;
    while (i > 0) {
      const p = (i - 1) >>> 1;
      const pd = due[p]!;
      if (pd < dueAt || (pd === dueAt && ids[p]! <= id)) break;
      due[i] = pd;
      ids[i] = ids[p]!;
      i = p;
    }
    due[i] = dueAt;
    ids[i] = id;
  }

  /** Removes the minimum (call only when size > 0). */
  pop(): void {
    const n = --this.#size;
    const due = this.#due;
    const ids = this.#id;
    if (n > 0) {
      const d = due[n]!;
      const id = ids[n]!;
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        const r = c + 1;
        if (r < n && (due[r]! < due[c]! || (due[r] === due[c] && ids[r]! < ids[c]!))) c = r;
        const cd = due[c]!;
        if (d < cd || (d === cd && id <= ids[c]!)) break;
        due[i] = cd;
        ids[i] = ids[c]!;
        i = c;
      }
      due[i] = d;
      ids[i] = id;
    }
    if (this.#due.length > MIN_CAPACITY && n < this.#due.length >>> 2) this.#resize(Math.max(MIN_CAPACITY, this.#due.length >>> 1));
  }

  clear(): void {
    this.#size = 0;
    this.#resize(MIN_CAPACITY);
  }

  #resize(cap: number): void {
    const due = new Float64Array(cap);
    const ids = new Float64Array(cap);
    due.set(this.#due.subarray(0, this.#size));
    ids.set(this.#id.subarray(0, this.#size));
    this.#due = due;
    this.#id = ids;
  }
}

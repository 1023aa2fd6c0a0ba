/**
 * A channel's unacknowledged deliveries, in delivery-tag order. Parallel arrays with a head
 * index instead of an object per delivery (research §5.3); an ack in the middle leaves a
 * tombstone that is skipped and compacted later. Tags only grow, so lookup is a binary search.
 */
import type { Consumer, Queue } from '../../../broker/mod.js';

export class UnackedDeliveries {
  tags: number[] = [];
  queues: (Queue | null)[] = [];
  refs: number[] = [];
  consumers: (Consumer | null)[] = [];
  sizes: number[] = [];
  #head = 0;
  count = 0;
  bytes = 0;

  push(tag: number, queue: Queue, ref: number, consumer: Consumer | null, size: number): void {
    this.tags.push(tag);
    this.queues.push(queue);
    this.refs.push(ref);
    this.consumers.push(consumer);
    this.sizes.push(size);
    this.count++;
    this.bytes += size;
  }

  /** Index of `tag`, or -1 if it is not outstanding. */
  indexOf(tag: number): number {
    let lo = this.#head;
    let hi = this.tags.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.tags[mid]!;
      if (t === tag) return this.queues[mid] === null ? -1 : mid;
      if (t < tag) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Calls fn for each live entry with tag <= `upTo` (or all when upTo is Infinity), removing them. */
  takeUpTo(upTo: number, fn: (queue: Queue, ref: number, consumer: Consumer | null, size: number) => void): void {
    let i = this.#head;
    const n = this.tags.length;
    while (i < n && this.tags[i]! <= upTo) {
      this.#take(i, fn);
      i++;
    }
    this.#compact();
  }

  takeAt(i: number, fn: (queue: Queue, ref: number, consumer: Consumer | null, size: number) => void): void {
    this.#take(i, fn);
    this.#compact();
  }

  #take(i: number, fn: (queue: Queue, ref: number, consumer: Consumer | null, size: number) => void): void {
    const q = this.queues[i];
    if (q === null || q === undefined) return;
    this.queues[i] = null;
    this.count--;
    const size = this.sizes[i]!;
    this.bytes -= size;
    const c = this.consumers[i]!;
    this.consumers[i] = null;
    fn(q, this.refs[i]!, c, size);
  }

  #compact(): void {
    while (this.#head < this.tags.length && this.queues[this.#head] === null) this.#head++;
    if (this.#head === this.tags.length) {
      this.tags.length = this.queues.length = this.refs.length = this.consumers.length = this.sizes.length = 0;
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > this.tags.length) {
      const h = this.#head;
      this.tags = this.tags.slice(h);
      this.queues = this.queues.slice(h);
      this.refs = this.refs.slice(h);
      this.consumers = this.consumers.slice(h);
      this.sizes = this.sizes.slice(h);
      this.#head = 0;
    }
  }
}

/**
 * A priority queue as one FIFO store per priority level (RabbitMQ's rabbit_priority_queue does
 * the same with backing queues): shift() serves the highest level that has ready messages, so
 * order within a level is kept and memory stays bounded per level as in FileQueueStore.
 *
 * A ref packs the level's own ref and the level: ref * 256 + level (levels are 0..255).
 */
import type { QueueStore, QueueStoreStats, StoredMessage } from './queue-store.js';

const LEVELS = 256;

function outer(m: StoredMessage, level: number): StoredMessage {
  return { ref: m.ref * LEVELS + level, payload: m.payload, ts: m.ts, flags: m.flags, redelivered: m.redelivered };
}

export class PriorityQueueStore implements QueueStore {
  readonly name: string;
  /** Index = priority level. */
  readonly #levels: QueueStore[];

  constructor(name: string, levels: QueueStore[]) {
    if (levels.length === 0 || levels.length > LEVELS) throw new RangeError('1..256 priority levels');
    this.name = name;
    this.#levels = levels;
  }

  get maxPriority(): number {
    return this.#levels.length - 1;
  }

  get readyCount(): number {
    let n = 0;
    for (const l of this.#levels) n += l.readyCount;
    return n;
  }

  get unackedCount(): number {
    let n = 0;
    for (const l of this.#levels) n += l.unackedCount;
    return n;
  }

  /** Priorities above the maximum count as the maximum (AMQP 0-9-1 §4.2.3 allows either). */
  enqueue(payload: Buffer, ts?: number, flags?: number, priority = 0): number {
    const level = Math.min(Math.max(priority, 0), this.#levels.length - 1);
    return this.#levels[level]!.enqueue(payload, ts, flags) * LEVELS + level;
  }

  flushed(): Promise<void> {
    return Promise.all(this.#levels.map((l) => l.flushed())).then(() => undefined);
  }

  #top(): number {
    for (let i = this.#levels.length - 1; i >= 0; i--) if (this.#levels[i]!.readyCount > 0) return i;
    return -1;
  }

  shift(): StoredMessage | null {
    const i = this.#top();
    if (i < 0) return null;
    const m = this.#levels[i]!.shift();
    return m === null ? null : outer(m, i);
  }

  peek(): StoredMessage | null {
    const i = this.#top();
    if (i < 0) return null;
    const m = this.#levels[i]!.peek();
    return m === null ? null : outer(m, i);
  }

  fill(): Promise<void> {
    const i = this.#top();
    return i < 0 ? Promise.resolve() : this.#levels[i]!.fill();
  }

  ack(ref: number): void {
    this.#levels[ref % LEVELS]?.ack(Math.floor(ref / LEVELS));
  }

  requeue(ref: number, count?: number): void {
    this.#levels[ref % LEVELS]?.requeue(Math.floor(ref / LEVELS), count);
  }

  requeueCount(ref: number): number {
    return this.#levels[ref % LEVELS]?.requeueCount(Math.floor(ref / LEVELS)) ?? 0;
  }

  discard(ref: number): boolean {
    return this.#levels[ref % LEVELS]?.discard(Math.floor(ref / LEVELS)) ?? false;
  }

  async forEachInTail(windowMs: number, fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    for (let i = 0; i < this.#levels.length; i++) {
      await this.#levels[i]!.forEachInTail(windowMs, (p, r, f) => fn(p, r * LEVELS + i, f));
    }
  }

  async forEachReady(fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    for (let i = 0; i < this.#levels.length; i++) {
      await this.#levels[i]!.forEachReady((p, r, f) => fn(p, r * LEVELS + i, f));
    }
  }

  async read(ref: number): Promise<StoredMessage | null> {
    const level = ref % LEVELS;
    const m = await this.#levels[level]?.read(Math.floor(ref / LEVELS));
    return m ? outer(m, level) : null;
  }

  purge(): number {
    let n = 0;
    for (const l of this.#levels) n += l.purge();
    return n;
  }

  stats(): QueueStoreStats {
    const s: QueueStoreStats = { live: 0, ready: 0, unacked: 0, buffered: 0, segments: 0 };
    for (const l of this.#levels) {
      const x = l.stats();
      s.live += x.live;
      s.ready += x.ready;
      s.unacked += x.unacked;
      s.buffered += x.buffered;
      s.segments += x.segments;
    }
    return s;
  }

  async close(): Promise<void> {
    for (const l of this.#levels) await l.close();
  }
}

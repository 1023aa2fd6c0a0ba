/**
 * A QueueStore held entirely in memory: for transient queues, and as the reference the
 * contract suite compares the file store against.
 */
import type { QueueStore, QueueStoreStats, StoredMessage } from '../queue-store/queue-store.js';

interface Entry {
  payload: Buffer;
  ts: number;
  flags: number;
  state: 0 | 1 | 2; // ready, handed out, gone
  redelivered: boolean;
  /** The count given with its last requeue. */
  requeues: number;
}

export class MemoryQueueStore implements QueueStore {
  readonly name: string;
  #entries = new Map<number, Entry>();
  #next = 0;
  #cursor = 0;
  #requeued: number[] = [];
  #ready = 0;
  #unacked = 0;

  constructor(name: string) {
    this.name = name;
  }

  get readyCount(): number {
    return this.#ready;
  }
  get unackedCount(): number {
    return this.#unacked;
  }

  enqueue(payload: Buffer, ts: number = Date.now(), flags = 0): number {
    const ref = this.#next++;
    this.#entries.set(ref, { payload, ts, flags, state: 0, redelivered: false, requeues: 0 });
    this.#ready++;
    return ref;
  }

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  shift(): StoredMessage | null {
    let ref: number | undefined;
    if (this.#requeued.length > 0) ref = this.#requeued.shift();
    else {
      while (this.#cursor < this.#next) {
        const e = this.#entries.get(this.#cursor++);
        if (e !== undefined && e.state === 0) {
          ref = this.#cursor - 1;
          break;
        }
      }
    }
    if (ref === undefined) return null;
    const e = this.#entries.get(ref)!;
    e.state = 1;
    this.#ready--;
    this.#unacked++;
    return { ref, payload: e.payload, ts: e.ts, flags: e.flags, redelivered: e.redelivered };
  }

  fill(): Promise<void> {
    return Promise.resolve();
  }

  ack(ref: number): void {
    const e = this.#entries.get(ref);
    if (e === undefined || e.state !== 1) return;
    this.#entries.delete(ref);
    this.#unacked--;
  }

  requeue(ref: number, count?: number): void {
    const e = this.#entries.get(ref);
    if (e === undefined || e.state !== 1) return;
    if (count !== undefined) e.requeues = count;
    e.state = 0;
    e.redelivered = true;
    this.#unacked--;
    this.#ready++;
    let i = this.#requeued.length;
    while (i > 0 && this.#requeued[i - 1]! > ref) i--;
    this.#requeued.splice(i, 0, ref);
  }

  requeueCount(ref: number): number {
    return this.#entries.get(ref)?.requeues ?? 0;
  }

  discard(ref: number): boolean {
    const e = this.#entries.get(ref);
    if (e === undefined || e.state !== 0) return false;
    this.#entries.delete(ref);
    this.#ready--;
    this.#requeued = this.#requeued.filter((r) => r !== ref);
    return true;
  }

  peek(): StoredMessage | null {
    let ref: number | undefined = this.#requeued[0];
    if (ref === undefined) {
      while (this.#cursor < this.#next) {
        const e = this.#entries.get(this.#cursor);
        if (e !== undefined && e.state === 0) {
          ref = this.#cursor;
          break;
        }
        this.#cursor++;
      }
    }
    if (ref === undefined) return null;
    const e = this.#entries.get(ref)!;
    return { ref, payload: e.payload, ts: e.ts, flags: e.flags, redelivered: e.redelivered };
  }

  async forEachInTail(windowMs: number, fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    let lastTs = -Infinity;
    for (const e of this.#entries.values()) lastTs = Math.max(lastTs, e.ts);
    for (const [ref, e] of this.#entries) if (e.ts >= lastTs - windowMs) fn(e.payload, ref, e.flags);
  }

  async forEachReady(fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    for (const [ref, e] of this.#entries) if (e.state === 0) fn(e.payload, ref, e.flags);
  }

  async read(ref: number): Promise<StoredMessage | null> {
    const e = this.#entries.get(ref);
    return e ? { ref, payload: e.payload, ts: e.ts, flags: e.flags, redelivered: e.redelivered } : null;
  }

  purge(): number {
    let n = 0;
    for (const [ref, e] of this.#entries) {
      if (e.state === 0) {
        this.#entries.delete(ref);
        n++;
      }
    }
    this.#ready = 0;
    this.#requeued = [];
    this.#cursor = this.#next;
    return n;
  }

  stats(): QueueStoreStats {
    return { live: this.#ready + this.#unacked, ready: this.#ready, unacked: this.#unacked, buffered: this.#ready, segments: 0 };
  }

  async close(): Promise<void> {}
}

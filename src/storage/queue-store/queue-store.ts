/**
 * What a queue needs from storage: messages in order, handed out one at a time, acked or put
 * back at their original position. A message is named by its `ref` (its offset in the queue's
 * log). Implementations: FileQueueStore (segment log plus ack files) and MemoryQueueStore.
 */

export interface StoredMessage {
  ref: number;
  payload: Buffer;
  ts: number;
  flags: number;
  /** Handed out before and put back (nack/reject with requeue, or a closed channel). */
  redelivered: boolean;
}

export interface QueueStoreStats {
  /** Not acked, not removed (ready plus handed out). */
  live: number;
  ready: number;
  /** Handed out by shift() and not yet acked or requeued. */
  unacked: number;
  /** Ready messages held in memory (bounded by the memory window). */
  buffered: number;
  segments: number;
}

export interface QueueStore {
  readonly name: string;
  /** Messages that shift() will hand out, now or after fill(). */
  readonly readyCount: number;
  readonly unackedCount: number;
  /** Stores a message at the tail; returns its ref. `payload` must not be changed afterwards. */
  enqueue(payload: Buffer, ts?: number, flags?: number, priority?: number): number;
  /** Resolves when every message enqueued so far is stored per the queue's durability. */
  flushed(): Promise<void>;
  /**
   * The next ready message if one is in memory, else null. When null is returned while
   * readyCount > 0, call fill() and try again.
   */
  shift(): StoredMessage | null;
  /**
   * The message shift() would return next, without handing it out; null when none is in memory
   * (call fill() when readyCount > 0).
   */
  peek(): StoredMessage | null;
  /** Loads ready messages from disk so that shift() can return them. */
  fill(): Promise<void>;
  /** The handed-out message is done with. */
  ack(ref: number): void;
  /**
   * The handed-out message goes back to its original position, to be delivered as redelivered.
   * `count`: how many times it has now been put back, for queues that count deliveries; kept
   * until the message is acked, across restarts where the store is durable.
   */
  requeue(ref: number, count?: number): void;
  /** The count given with the message's last requeue, 0 if none. */
  requeueCount(ref: number): number;
  /** Removes a ready message that was not handed out (expiry, length limits); false if it was not ready. */
  discard(ref: number): boolean;
  /**
   * Calls fn for every stored message (acked or not) enqueued at most `windowMs` before the last
   * one, assuming enqueue times rise with refs (they come from the clock at enqueue); for
   * recovery checks of what was written last.
   */
  forEachInTail(windowMs: number, fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void>;
  /** Calls fn with the payload of every ready message, reading from disk where needed. */
  forEachReady(fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void>;
  /** Reads a stored message by ref (whether ready or handed out), or null if it is gone. */
  read(ref: number): Promise<StoredMessage | null>;
  /** Removes every ready message; returns how many. */
  purge(): number;
  stats(): QueueStoreStats;
  close(): Promise<void>;
}

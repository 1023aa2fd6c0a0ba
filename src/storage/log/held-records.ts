/**
 * Records appended to a SegmentLog but not yet placed in their segment file (see "Held records"
 * in segment-log.ts), oldest first, and the owner's say over each one.
 */
import type { Segment } from './segment.js';

/** What the log does with a held record when a round starts (the owner's WriteGate decides). */
export const Placement = {
  /** Write it in this round. */
  WRITE: 0,
  /** Its owner released it: write an ELIDED record in its place (record.ts). */
  ELIDE: 1,
  /** Keep it back for now; it and every later record wait for a later round. */
  HOLD: 2,
} as const;
export type PlacementValue = (typeof Placement)[keyof typeof Placement];

/** The owner's decision for the held record at `offset`. */
export type WriteGate = (offset: number) => PlacementValue;

export interface HeldRecord {
  offset: number;
  seg: Segment;
  payload: Buffer;
  ts: number;
  flags: number;
  type: number;
  /** Bytes reserved for it in `seg` (its full size). */
  size: number;
  /** The payload is the caller's buffer, written as it is; only such records go to the gate. */
  retained: boolean;
  /** From GroupCommitter.ticket(), or Infinity when nobody waits for its durability. */
  ticket: number;
  /** performance.now() at append. */
  at: number;
}

/** A FIFO without per-shift copying. */
export class HeldRecords {
  #items: Array<HeldRecord | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(r: HeldRecord): void {
    this.#items.push(r);
  }

  peek(): HeldRecord | undefined {
    return this.#items[this.#head];
  }

  shift(): HeldRecord | undefined {
    const r = this.#items[this.#head];
    if (r === undefined) return undefined;
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return r;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

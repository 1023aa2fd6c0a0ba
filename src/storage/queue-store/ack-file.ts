/**
 * Acknowledgements of one queue segment: an append-only file of u32 little-endian offsets
 * relative to the segment's base (LavinMQ's acks.<seg>). Written in the commit round without
 * fsync: an ack lost in a crash only means the message is delivered again, which AMQP allows.
 */

export function ackFileName(base: number): string {
  return `${String(base).padStart(20, '0')}.acks`;
}

/** Per-segment ack state: a bitmap of acked relative offsets and the count. */
export class SegmentAcks {
  readonly base: number;
  /** Records in the segment (grows while the segment is the active one). */
  count = 0;
  acked = 0;
  #bits: Uint8Array | null = null;
  /** Acks not yet written to the ack file. */
  pending: number[] = [];
  fd = -1;
  /** Bytes already in the ack file. */
  fileBytes = 0;

  constructor(base: number) {
    this.base = base;
  }

  isAcked(offset: number): boolean {
    const rel = offset - this.base;
    return this.#bits !== null && (this.#bits[rel >>> 3]! & (1 << (rel & 7))) !== 0;
  }

  /** Marks `offset` acked; false if it already was. */
  mark(offset: number): boolean {
    const rel = offset - this.base;
    if (this.#bits === null || this.#bits.length <= rel >>> 3) {
      const grown = new Uint8Array(Math.max((rel >>> 3) + 1, ((this.count + 7) >>> 3), this.#bits ? this.#bits.length * 2 : 64));
      if (this.#bits) grown.set(this.#bits);
      this.#bits = grown;
    }
    const i = rel >>> 3;
    const m = 1 << (rel & 7);
    if ((this.#bits[i]! & m) !== 0) return false;
    this.#bits[i] = this.#bits[i]! | m;
    this.acked++;
    return true;
  }

  get complete(): boolean {
    return this.count > 0 && this.acked >= this.count;
  }
}

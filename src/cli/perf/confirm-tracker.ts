/**
 * Publisher-confirm bookkeeping for one channel (RabbitMQ's confirms extension: delivery tags
 * count publishes from 1; basic.ack/nack with multiple=true settle every tag up to and
 * including the given one). A ring of flags over the outstanding window, so an ack, single or
 * multiple, in any order, costs O(tags it settles) and allocates nothing.
 */
export class ConfirmTracker {
  #settled: Uint8Array;
  #mask: number;
  /** Lowest tag not yet settled. */
  #low = 1;
  /** Last tag published. */
  #high = 0;
  /** Tags settled above #low (out of order), so outstanding stays exact. */
  #ahead = 0;

  constructor(window: number) {
    let size = 1;
    while (size < window + 1) size <<= 1;
    this.#settled = new Uint8Array(size);
    this.#mask = size - 1;
  }

  /** Publishes sent but not yet acked or nacked. */
  get outstanding(): number {
    return this.#high - this.#low + 1 - this.#ahead;
  }

  /** Registers n more publishes (tags #high+1 … #high+n). */
  published(n: number): void {
    this.#high += n;
  }

  /** Settles a tag (or all up to it); returns how many publishes this newly settled. */
  settle(tag: number, multiple: boolean): number {
    if (tag < this.#low || tag > this.#high) return 0;
    const s = this.#settled;
    const m = this.#mask;
    if (multiple) {
      let n = 0;
      for (let t = this.#low; t <= tag; t++) {
        if (s[t & m] === 0) n++;
        else {
          s[t & m] = 0;
          this.#ahead--;
        }
      }
      this.#low = tag + 1;
      return n + this.#advance();
    }
    if (s[tag & m] !== 0) return 0;
    if (tag === this.#low) {
      this.#low++;
      this.#advance();
      return 1;
    }
    s[tag & m] = 1;
    this.#ahead++;
    return 1;
  }

  /** Moves #low past tags already settled out of order (they were counted then). */
  #advance(): number {
    const s = this.#settled;
    const m = this.#mask;
    while (this.#low <= this.#high && s[this.#low & m] !== 0) {
      s[this.#low & m] = 0;
      this.#ahead--;
      this.#low++;
    }
    return 0;
  }
}

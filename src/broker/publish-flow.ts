/**
 * Publish flow control, in the spirit of RabbitMQ's credit flow: when timed work falls due
 * (a delayed message to fire), the front-ends stop reading from connections that publish until
 * it has run, and TCP pushes back on the clients. Without it, one poll of the event loop can
 * parse a publisher's whole confirm window (thousands of messages, tens of milliseconds) before
 * a timer gets its turn; with it, publishing and firing take turns. Consumers and their acks are
 * never held back, and while no timed work is due publishers are never held at all.
 *
 * Front-ends check `held` every few frames of a connection that has published, park themselves
 * with `waitForRelease`, and are called back when the work has run.
 */

/** Publishing time guaranteed between two turns of timed work (ms; the clock has 1 ms steps). */
const PUBLISH_SLICE_MS = 2;

export interface FlowListener {
  flowReleased(): void;
}

export class PublishFlow {
  /** When timed work is next due (ms since the epoch); -Infinity while it runs. */
  #dueAt = Infinity;
  #waiting: FlowListener[] = [];
  /** Times a publishing connection was paused (for metrics and tests). */
  pauses = 0;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get held(): boolean {
    // No clock read while nothing is scheduled (the common case).
    return this.#dueAt !== Infinity && this.#dueAt <= this.#now();
  }

  /**
   * The next timed work is due at `at` (Infinity: none, -Infinity: running now). After work has
   * run, publishers get at least PUBLISH_SLICE_MS before the next is let in: due entries every
   * few microseconds would otherwise hold them at every check, and publishing would crawl.
   */
  nextWorkAt(at: number): void {
    this.#dueAt = at === -Infinity || at === Infinity ? at : Math.max(at, this.#now() + PUBLISH_SLICE_MS);
    if (this.#waiting.length > 0 && !this.held) {
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const l of waiting) l.flowReleased();
    }
  }

  /** `l` is called once when publishers may go on (at once if they may now). */
  waitForRelease(l: FlowListener): void {
    if (!this.held) {
      l.flowReleased();
      return;
    }
    this.pauses++;
    this.#waiting.push(l);
  }
}

/**
 * The consumer side of the delayed-message bench: what arrived, when, and how often, per
 * sequence number, in typed arrays (no object per message).
 *
 * A second delivery of a seq is classified by the AMQP `redelivered` flag and by the broker
 * lifetime ("epoch": 1 before a kill, 2 after the restart) of its first delivery:
 *  - redelivered flag set: a redelivery (delivered before, not acked);
 *  - flag clear, first delivery in the same epoch: the delayed message was fired twice (the
 *    consumer's connection never dropped within an epoch, so nothing could be redelivered);
 *  - flag clear, first delivery in an earlier epoch: ambiguous from the client's side, either
 *    a delivered-but-unacked message redelivered without the flag after the crash, or a
 *    second firing.
 */
import amqp from 'amqplib';

export interface LatenessStats {
  n: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  min: number;
}

export class Tally {
  readonly count: number;
  /** Epoch of the first delivery of each seq (0 = never delivered). */
  readonly firstEpoch: Uint8Array;
  /** Deliveries per seq, saturating at 255. */
  readonly deliveries: Uint8Array;
  /** receive time − dueAt of the first delivery, ms. */
  readonly lateness: Float32Array;
  /** When the first delivery arrived (ms since epoch). */
  readonly firstAt: Float64Array;
  /** dueAt as carried in the body. */
  readonly dueAt: Float64Array;
  /** 1 if the publisher sent the message at or after its due time (x-delay 0). */
  readonly pastDue: Uint8Array;
  received = 0;
  deliveriesTotal = 0;
  redelivered = 0;
  redeliveredFirstSeen = 0;
  firedTwiceSameEpoch = 0;
  repeatAcrossKillNoFlag = 0;
  malformed = 0;
  lastDeliveryAt = 0;
  epoch = 1;

  constructor(count: number) {
    this.count = count;
    this.firstEpoch = new Uint8Array(count);
    this.deliveries = new Uint8Array(count);
    this.lateness = new Float32Array(count).fill(NaN);
    this.firstAt = new Float64Array(count);
    this.dueAt = new Float64Array(count);
    this.pastDue = new Uint8Array(count);
  }

  record(content: Buffer, redelivered: boolean): void {
    const now = performance.timeOrigin + performance.now();
    this.lastDeliveryAt = now;
    this.deliveriesTotal++;
    if (content.length < 13) {
      this.malformed++;
      return;
    }
    const due = content.readDoubleLE(0);
    const seq = content.readUInt32LE(8);
    if (seq >= this.count) {
      this.malformed++;
      return;
    }
    if (this.deliveries[seq]! < 255) this.deliveries[seq]!++;
    const first = this.firstEpoch[seq]!;
    if (first === 0) {
      this.firstEpoch[seq] = this.epoch;
      this.received++;
      this.lateness[seq] = now - due;
      this.firstAt[seq] = now;
      this.dueAt[seq] = due;
      this.pastDue[seq] = content[12]! & 1;
      if (redelivered) this.redeliveredFirstSeen++;
      return;
    }
    if (redelivered) this.redelivered++;
    else if (first === this.epoch) this.firedTwiceSameEpoch++;
    else this.repeatAcrossKillNoFlag++;
  }

  /**
   * Exact percentiles of the first-delivery lateness of the seqs `include` selects, or of
   * `value(seq, lateness)` when given.
   */
  stats(include: (seq: number) => boolean, value?: (seq: number, lateness: number) => number): LatenessStats {
    const sel = new Float32Array(this.count);
    let n = 0;
    for (let i = 0; i < this.count; i++) {
      if (this.firstEpoch[i] !== 0 && include(i)) sel[n++] = value ? value(i, this.lateness[i]!) : this.lateness[i]!;
    }
    const s = sel.subarray(0, n).sort();
    const q = (p: number): number => (n === 0 ? NaN : round2(s[Math.min(n - 1, Math.floor(p * n))]!));
    return { n, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: n ? round2(s[n - 1]!) : NaN, min: n ? round2(s[0]!) : NaN };
  }

  /** Seqs confirmed to the publisher (confirmed[i] === 1) that never arrived. */
  lost(confirmed: Uint8Array): number {
    let lost = 0;
    for (let i = 0; i < this.count; i++) if (confirmed[i] === 1 && this.firstEpoch[i] === 0) lost++;
    return lost;
  }

  /** Seqs delivered more than once (whatever the reason). */
  seqsDeliveredMoreThanOnce(): number {
    let n = 0;
    for (let i = 0; i < this.count; i++) if (this.deliveries[i]! > 1) n++;
    return n;
  }
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * An amqplib consumer feeding a Tally. Acks every `ackEvery` messages with multiple=true (and
 * whatever is pending every 20 ms); ackEvery = 1 acks each message after recording it.
 */
export class TallyConsumer {
  readonly #conn: amqp.ChannelModel;
  readonly #ch: amqp.Channel;
  readonly #timer: NodeJS.Timeout;
  closed = false;

  private constructor(conn: amqp.ChannelModel, ch: amqp.Channel, timer: NodeJS.Timeout) {
    this.#conn = conn;
    this.#ch = ch;
    this.#timer = timer;
  }

  static async start(url: string, queue: string, tally: Tally, prefetch: number, ackEvery: number): Promise<TallyConsumer> {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.prefetch(prefetch);
    let pending = 0;
    let last: amqp.ConsumeMessage | null = null;
    let dead = false;
    const flush = (): void => {
      if (pending > 0 && last !== null && !dead) {
        try {
          ch.ack(last, true);
        } catch {
          dead = true;
        }
        pending = 0;
      }
    };
    const timer = setInterval(flush, 20);
    const c = new TallyConsumer(conn, ch, timer);
    // A killed broker shows up as an error and a close; both are expected here.
    const down = (): void => {
      dead = true;
      c.closed = true;
      clearInterval(timer);
    };
    conn.on('error', down);
    conn.on('close', down);
    ch.on('error', down);
    await ch.consume(queue, (m) => {
      if (m === null) return;
      tally.record(m.content, m.fields.redelivered);
      last = m;
      if (++pending >= ackEvery) flush();
    });
    return c;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.closed) return;
    this.closed = true;
    // After a SIGKILL the socket may not have reported its end yet: don't wait on it forever.
    const closing = (async () => {
      try {
        await this.#ch.close();
        await this.#conn.close();
      } catch {
        // already gone
      }
    })();
    await Promise.race([closing, new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}

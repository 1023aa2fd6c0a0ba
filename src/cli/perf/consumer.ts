/**
 * One consumer: a connection, channel 1, basic.qos, basic.consume. Each delivery costs one
 * counter increment, one histogram record (latency = the arrival time of the socket chunk −
 * the send time in the body) and, with manual acks, one basic.ack every multiAck messages
 * (multiple=true when multiAck > 1), written with the connection's per-chunk flush.
 */
import type { DeliveryListener, PerfConnection } from './perf-connection.js';
import type { PerfStats } from './perf-stats.js';

export interface ConsumerOptions {
  autoack: boolean;
  /** basic.qos prefetch-count, 0 for none (no basic.qos is sent). */
  prefetch: number;
  /** Ack every n deliveries; n > 1 acks with multiple=true. */
  multiAck: number;
}

const CHANNEL = 1;

export class Consumer implements DeliveryListener {
  #conn: PerfConnection;
  #stats: PerfStats;
  #ack: boolean;
  #multiAck: number;
  #unacked = 0;
  #lastTag = 0;
  received = 0;

  private constructor(conn: PerfConnection, opts: ConsumerOptions, stats: PerfStats) {
    this.#conn = conn;
    this.#stats = stats;
    this.#ack = !opts.autoack;
    this.#multiAck = Math.max(1, opts.multiAck);
  }

  static async create(conn: PerfConnection, queue: string, opts: ConsumerOptions, stats: PerfStats): Promise<Consumer> {
    await conn.openChannel(CHANNEL);
    const c = new Consumer(conn, opts, stats);
    conn.setDeliveryListener(CHANNEL, c);
    if (opts.prefetch > 0) await conn.basicQos(CHANNEL, opts.prefetch);
    await conn.basicConsume(CHANNEL, queue, opts.autoack);
    return c;
  }

  onDelivery(tag: number, sentAt: number): void {
    const s = this.#stats;
    this.received++;
    if (s.recording) {
      const now = this.#conn.now;
      s.consumed++;
      s.lastConsumeAt = now;
      if (sentAt === sentAt) s.interval.record(now - sentAt);
    }
    if (this.#ack) {
      this.#lastTag = tag;
      if (++this.#unacked >= this.#multiAck) {
        this.#conn.ack(CHANNEL, tag, this.#multiAck > 1);
        this.#unacked = 0;
      }
    }
  }

  /** Acks what a multi-ack consumer still holds (at the end of a run), so nothing is requeued. */
  flushAcks(): void {
    if (this.#unacked === 0) return;
    this.#conn.ack(CHANNEL, this.#lastTag, true);
    this.#unacked = 0;
    this.#conn.flush();
  }
}

/**
 * The producers and consumers that run in one thread (the main one, or a worker). Consumers
 * are connected and consuming before any producer starts. Every producer and consumer has its
 * own connection, as PerfTest does by default.
 */
import { parseAmqpUri } from './amqp-uri.js';
import { Consumer, type ConsumerOptions } from './consumer.js';
import { PerfConnection } from './perf-connection.js';
import { PerfStats, type IntervalStats } from './perf-stats.js';
import { Publisher, type PublisherOptions, type PublisherSpec } from './publisher.js';

export interface AgentPlan {
  uri: string;
  producers: Array<{ index: number; spec: PublisherSpec }>;
  consumers: Array<{ index: number; queue: string }>;
  publisher: PublisherOptions;
  consumer: ConsumerOptions;
}

export interface AgentTake {
  stats: IntervalStats;
  /** Every producer here published its --count (and had it settled). */
  producersFinished: boolean;
  /** When the last of them finished (nowMs), 0 if not all have. */
  producersFinishedAt: number;
  /** Unconfirmed publishes across this thread's producers. */
  outstanding: number;
}

/** Connections opened at once during setup. */
const CONNECT_PARALLEL = 16;

export class PerfAgent {
  readonly stats = new PerfStats();
  #plan: AgentPlan;
  #conns: PerfConnection[] = [];
  #publishers: Publisher[] = [];
  #consumers: Consumer[] = [];
  #onError: (e: Error) => void;

  constructor(plan: AgentPlan, onError: (e: Error) => void) {
    this.#plan = plan;
    this.#onError = onError;
  }

  async #connect(name: string): Promise<PerfConnection> {
    const c = await PerfConnection.connect(parseAmqpUri(this.#plan.uri), { name });
    c.onError = (e) => this.#onError(new Error(`${name}: ${e.message}`));
    this.#conns.push(c);
    return c;
  }

  async setup(): Promise<void> {
    const p = this.#plan;
    await inBatches(p.consumers, CONNECT_PARALLEL, async ({ index, queue }) => {
      const c = await this.#connect(`perf consumer ${index}`);
      this.#consumers.push(await Consumer.create(c, queue, p.consumer, this.stats));
    });
    await inBatches(p.producers, CONNECT_PARALLEL, async ({ index, spec }) => {
      const c = await this.#connect(`perf producer ${index}`);
      this.#publishers.push(await Publisher.create(c, spec, p.publisher, this.stats));
    });
  }

  start(): void {
    for (const p of this.#publishers) p.start();
  }

  stop(): void {
    for (const p of this.#publishers) p.stop();
    for (const c of this.#consumers) c.flushAcks();
    this.stats.recording = false;
  }

  take(): AgentTake {
    let outstanding = 0;
    let finished = true;
    let at = 0;
    for (const p of this.#publishers) {
      outstanding += p.outstanding;
      if (!p.finished) finished = false;
      else if (p.finishedAt > at) at = p.finishedAt;
    }
    return { stats: this.stats.take(), producersFinished: finished, producersFinishedAt: finished ? at : 0, outstanding };
  }

  async close(): Promise<void> {
    await Promise.all(this.#conns.map((c) => c.close(3000)));
  }
}

export async function inBatches<T>(items: readonly T[], parallel: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += parallel) await Promise.all(items.slice(i, i + parallel).map(fn));
}

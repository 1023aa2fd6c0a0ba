/**
 * The queues, exchange and bindings of a throughput run, and who publishes and consumes where.
 *
 *   queues     PREFIX0 … PREFIX(n-1)
 *   direct     queue i bound with key = its name; producer p publishes with the name of
 *              queue p mod n
 *   fanout     every queue bound with key ''; every producer reaches every queue
 *   topic      queue i bound with "perf.q<i>.*"; producer p publishes "perf.q<p mod n>.x"
 *   headers    queue i bound with {x-match: all, perf-queue: <name>}; producer p sends
 *              header perf-queue = the name of queue p mod n
 *   default    (--exchange '') no bindings; the routing key is the queue name
 *
 * Consumer c consumes from queue c mod n.
 */
import type { PerfConnection } from './perf-connection.js';
import type { PerfOptions } from './perf-options.js';
import type { PublisherSpec } from './publisher.js';

export interface Topology {
  queues: string[];
  producers: PublisherSpec[];
  /** Queue of each consumer. */
  consumers: string[];
  /** Deliveries each published message produces for the consumers (for --count runs). */
  copiesConsumed: number[];
}

export function planTopology(o: PerfOptions): Topology {
  const queues = Array.from({ length: o.queues }, (_, i) => `${o.queuePrefix}${i}`);
  const consumers = Array.from({ length: o.consumers }, (_, i) => queues[i % queues.length]!);
  const consumed = new Set(consumers);
  const producers: PublisherSpec[] = [];
  const copiesConsumed: number[] = [];
  for (let p = 0; p < o.producers; p++) {
    const qi = p % queues.length;
    const q = queues[qi]!;
    let routingKey = q;
    let headers: Record<string, string> | null = null;
    if (o.exchangeType === 'fanout') routingKey = '';
    else if (o.exchangeType === 'topic') routingKey = `perf.q${qi}.x`;
    else if (o.exchangeType === 'headers') {
      routingKey = '';
      headers = { 'perf-queue': q };
    }
    producers.push({ exchange: o.exchange, routingKey, headers });
    copiesConsumed.push(o.exchangeType === 'fanout' ? consumed.size : consumed.has(q) ? 1 : 0);
  }
  return { queues, producers, consumers, copiesConsumed };
}

export async function declareTopology(conn: PerfConnection, channel: number, o: PerfOptions, t: Topology): Promise<void> {
  if (o.exchange !== '') await conn.exchangeDeclare(channel, o.exchange, o.exchangeType, o.durable);
  for (let i = 0; i < t.queues.length; i++) {
    const q = t.queues[i]!;
    await conn.queueDeclare(channel, q, { durable: o.durable });
    if (o.exchange === '') continue;
    if (o.exchangeType === 'direct') await conn.queueBind(channel, q, o.exchange, q);
    else if (o.exchangeType === 'fanout') await conn.queueBind(channel, q, o.exchange, '');
    else if (o.exchangeType === 'topic') await conn.queueBind(channel, q, o.exchange, `perf.q${i}.*`);
    else await conn.queueBind(channel, q, o.exchange, '', { 'x-match': 'all', 'perf-queue': q });
  }
}

export async function deleteTopology(conn: PerfConnection, channel: number, o: PerfOptions, t: Topology): Promise<void> {
  for (const q of t.queues) await conn.queueDelete(channel, q);
  if (o.exchange !== '') await conn.exchangeDelete(channel, o.exchange);
}

/** What the Broker's calls take and return (declare, publish, consume). */
import type { ConsumerSink } from './queue/consumer.js';

export interface DeclareQueueInput {
  name: string;
  passive?: boolean;
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  args?: Record<string, unknown>;
}

export interface DeclareExchangeInput {
  name: string;
  type: string;
  passive?: boolean;
  durable?: boolean;
  autoDelete?: boolean;
  internal?: boolean;
  args?: Record<string, unknown>;
}

export interface PublishInput {
  exchange: string;
  routingKey: string;
  props: Buffer;
  body: Buffer;
  persistent: boolean;
}

export interface PublishResult {
  /** Queues the message went to (a delayed message counts as routed). */
  routed: number;
  /** Whether the confirm must wait for Broker.flushed() (persistent message in a durable queue). */
  needsFlush: boolean;
  /** A queue refused it (x-overflow reject-publish): the confirm is a nack. */
  rejected: boolean;
}

export interface ConsumeInput {
  queue: string;
  tag: string;
  noAck: boolean;
  exclusive: boolean;
  priority?: number;
  args?: Record<string, unknown>;
  sink: ConsumerSink;
  connectionId: number;
}

/** Told when the storage flush asked for with Broker.whenFlushed() is done (`ok`) or failed. */
export type { FlushListener } from '../storage/mod.js';

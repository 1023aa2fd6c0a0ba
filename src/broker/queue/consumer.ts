/**
 * A consumer as the broker sees it. Its sink (a protocol channel) owns credit: prefetch and
 * flow control live where the unacked deliveries are tracked.
 */
import type { StoredMessage } from '../../storage/mod.js';
import type { Queue } from './queue.js';

export interface ConsumerSink {
  /** Whether `consumer` may take one more message now. */
  canAccept(consumer: Consumer): boolean;
  /**
   * Hands a message over. For a no-ack consumer the queue forgets it right after, and `msg`
   * itself may be reused once the call returns: keep its fields, not the object.
   */
  deliver(consumer: Consumer, queue: Queue, msg: StoredMessage): void;
  /** Deliveries to `consumer` not yet acked or returned. */
  unackedOf(consumer: Consumer): number;
  /** The broker ended the consumer (queue deleted): tell the client (consumer_cancel_notify). */
  cancelledByBroker(consumer: Consumer): void;
}

export interface Consumer {
  readonly tag: string;
  readonly queue: Queue;
  readonly noAck: boolean;
  readonly exclusive: boolean;
  readonly priority: number;
  readonly args: Record<string, unknown>;
  readonly sink: ConsumerSink;
  /** The connection that owns it (exclusive queues, cleanup). */
  readonly connectionId: number;
}

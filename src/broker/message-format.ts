/**
 * How the broker reads and amends the properties of the messages it stores. A stored message
 * keeps its properties as the bytes the front-end received (message.ts); the features that
 * must look inside them (TTL, priority, dead-lettering, delays, dedup, retries) go through this
 * port, which the protocol layer implements. The broker never parses wire bytes itself.
 */

/** Why a message was dead-lettered, with RabbitMQ's names (the `reason` in x-death). */
export type DeathReason = 'rejected' | 'expired' | 'maxlen' | 'delivery_limit';

export interface DeathEvent {
  queue: string;
  reason: DeathReason;
  /** Where the message had been published to, and with which routing keys. */
  exchange: string;
  routingKeys: string[];
  /** Milliseconds since the epoch. */
  time: number;
}

export interface MessageFormat {
  /** The headers table as plain values, or undefined when there is none. */
  headers(props: Buffer): Record<string, unknown> | undefined;
  /** One header's value (plain), or undefined. */
  header(props: Buffer, name: string): unknown;
  /** A basic property by its AMQP field name (message_id, correlation_id, timestamp, ...). */
  property(props: Buffer, name: string): unknown;
  /** The per-message TTL as sent (a decimal string of milliseconds), or undefined. */
  expiration(props: Buffer): string | undefined;
  priority(props: Buffer): number | undefined;
  /** The (queue, reason) pairs of the x-death history, most recent first. */
  deaths(props: Buffer): Array<{ queue: string; reason: string }>;
  /**
   * The properties of the dead-lettered copy: x-death updated as RabbitMQ does (an entry per
   * queue and reason, counted, most recent first), x-first-death-* set once, and a per-message
   * expiration moved into the entry as original-expiration so the copy does not expire again.
   */
  deadLettered(props: Buffer, death: DeathEvent): Buffer;
  /**
   * Sender-selected distribution (RabbitMQ's CC and BCC headers): routing keys the message is
   * routed with besides its own; undefined when it has neither (the common case, answered
   * without decoding anything).
   */
  senderKeys(props: Buffer): { cc: string[]; bcc: string[] } | undefined;
  /** The properties without the header `name` (BCC is removed before a message is stored). */
  withoutHeader(props: Buffer, name: string): Buffer;
  /** The properties with one integer header set (x-delivery-count, x-retry-count). */
  withIntHeader(props: Buffer, name: string, value: number): Buffer;
}

/**
 * The exchange types Sluice knows. The last three are RabbitMQ plugin types, built in here:
 * x-consistent-hash (rabbitmq_consistent_hash_exchange), x-delayed-message
 * (rabbitmq_delayed_message_exchange) and x-message-deduplication
 * (noxdafox/rabbitmq-message-deduplication).
 */
export const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers', 'x-consistent-hash', 'x-delayed-message', 'x-message-deduplication'] as const;
export type ExchangeType = (typeof EXCHANGE_TYPES)[number];

export function isExchangeType(t: string): t is ExchangeType {
  return (EXCHANGE_TYPES as readonly string[]).includes(t);
}

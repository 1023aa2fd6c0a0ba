/** The broker core's surface: the only file protocol front-ends import from broker/. */
export { Broker, type BrokerOptions, type PublishInput, type PublishResult, type DeclareQueueInput, type DeclareExchangeInput, type ConsumeInput, type FlushListener } from './broker.js';
export { BrokerError, type BrokerErrorKind, type BrokerErrorScope } from './errors.js';
export { PublishFlow, type FlowListener } from './publish-flow.js';
export type { Consumer, ConsumerSink } from './queue/consumer.js';
export { Queue, type QueueDefinition } from './queue/queue.js';
export type { BindingDefinition, ExchangeDefinition } from './exchange/exchange.js';
export { StoredMessageView, MessageFlags, storedBodySize } from './message.js';
export type { MessageFormat, DeathEvent, DeathReason } from './message-format.js';
export type { PolicyDefinition } from './policy/policy.js';
export type { StoredMessage } from '../storage/mod.js';

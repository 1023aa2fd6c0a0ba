/** What a connection needs from the server that accepted it. */
import type { AmqpConnection } from './connection.js';
import type { AmqpChannel } from './channel.js';

export interface AmqpConfig {
  frameMax: number;
  channelMax: number;
  heartbeat: number;
  handshakeTimeout: number;
  maxMessageSize: number;
  version: string;
  clusterName: string;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AmqpServerContext {
  readonly config: AmqpConfig;
  readonly log: Logger;
  /** Non-null while publishers are blocked (memory or disk alarm), with the reason. */
  readonly blocked: string | null;
  connectionOpened(c: AmqpConnection): void;
  connectionClosed(c: AmqpConnection): void;
  /** Direct reply-to: the channel that consumes `amq.rabbitmq.reply-to.<key>`, if any. */
  replyChannel(key: string): AmqpChannel | undefined;
  registerReplyChannel(key: string, ch: AmqpChannel | null): void;
}

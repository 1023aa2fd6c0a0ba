/**
 * The AMQP listener: the only file of this front-end that touches sockets. It owns the
 * connection registry, one 1-second tick for all heartbeats (not a timer per connection),
 * direct reply-to routing between channels, and the shutdown that closes every connection
 * with 320 CONNECTION_FORCED.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Broker } from '../../broker/mod.js';
import { ReplyCode } from './codec/mod.js';
import type { AmqpChannel } from './session/channel.js';
import { AmqpConnection } from './session/connection.js';
import type { AmqpConfig, AmqpServerContext, Logger } from './session/server-context.js';

export interface AmqpServerOptions extends Partial<AmqpConfig> {
  host?: string;
  port?: number;
  log: Logger;
}

export class AmqpServer implements AmqpServerContext {
  readonly config: AmqpConfig;
  readonly log: Logger;
  readonly #broker: Broker;
  readonly #server: Server;
  readonly #connections = new Set<AmqpConnection>();
  /** Connections not yet open, with when they were accepted. */
  readonly #handshaking = new Map<AmqpConnection, number>();
  readonly #sockets = new Set<Socket>();
  readonly #replyChannels = new Map<string, AmqpChannel>();
  #tick: NodeJS.Timeout | null = null;
  blocked: string | null = null;

  constructor(broker: Broker, opts: AmqpServerOptions) {
    this.#broker = broker;
    this.log = opts.log;
    this.config = {
      frameMax: opts.frameMax ?? 131072,
      channelMax: opts.channelMax ?? 2047,
      heartbeat: opts.heartbeat ?? 60,
      handshakeTimeout: opts.handshakeTimeout ?? 10_000,
      maxMessageSize: opts.maxMessageSize ?? 128 * 1024 * 1024,
      version: opts.version ?? '0.1.0',
      clusterName: opts.clusterName ?? 'sluice',
    };
    this.#server = createServer((socket) => this.#accept(socket));
    this.#server.on('error', (err) => this.log.error({ err }, 'AMQP listener error'));
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#tick = setInterval(() => {
      const now = Date.now();
      for (const c of this.#connections) c.tick(now);
      this.#expireHandshakes(now);
    }, 1000);
    this.#tick.unref();
    const addr = this.#server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : port;
  }

  /**
   * RabbitMQ's handshake_timeout: a socket that has not reached connection.open in time is
   * closed, so that connections which never speak cannot pile up. Checked on the 1-second tick.
   */
  #expireHandshakes(now: number): void {
    const limit = this.config.handshakeTimeout;
    if (limit <= 0) return;
    for (const [c, acceptedAt] of this.#handshaking) {
      if (now - acceptedAt < limit) continue;
      this.#handshaking.delete(c);
      this.log.warn({ connection: c.id, remote: c.socket.remoteAddress }, `closing a connection that did not complete the handshake in ${limit} ms (handshake_timeout)`);
      c.socket.destroy();
    }
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    try {
      const c = new AmqpConnection(socket, this.#broker, this);
      this.#handshaking.set(c, Date.now());
      socket.on('close', () => this.#handshaking.delete(c));
    } catch (err) {
      this.log.error({ err }, 'could not set up an AMQP connection');
      socket.destroy();
    }
  }

  connectionOpened(c: AmqpConnection): void {
    this.#handshaking.delete(c);
    this.#connections.add(c);
  }
  connectionClosed(c: AmqpConnection): void {
    this.#connections.delete(c);
  }
  replyChannel(key: string): AmqpChannel | undefined {
    return this.#replyChannels.get(key);
  }
  registerReplyChannel(key: string, ch: AmqpChannel | null): void {
    if (ch === null) this.#replyChannels.delete(key);
    else this.#replyChannels.set(key, ch);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Publishers are told to stop (connection.blocked) or may go on again (reason null). */
  setBlocked(reason: string | null): void {
    this.blocked = reason;
    for (const c of this.#connections) c.setBlocked(reason);
  }

  /** Stops accepting, closes every connection with 320 CONNECTION_FORCED, waits for the sockets. */
  async close(reason = 'broker shutdown'): Promise<void> {
    if (this.#tick) clearInterval(this.#tick);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#connections) c.forceClose(ReplyCode.CONNECTION_FORCED, `CONNECTION_FORCED - ${reason}`);
    const deadline = Date.now() + 2000;
    while (this.#sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}

/**
 * The composition root: opens the broker on its data directory and starts the listeners.
 * `startBroker` is also the embedding API (tests start a broker in-process with it).
 */
import { mkdirSync } from 'node:fs';
import pino from 'pino';
import { Broker } from '../broker/mod.js';
import { AmqpServer, amqpMessageFormat } from '../protocols/amqp091/mod.js';
import { DEFAULT_CONFIG, type SluiceConfig } from './config.js';

export interface StartedBroker {
  broker: Broker;
  amqpPort: number;
  host: string;
  /** amqp://guest:guest@127.0.0.1:<port> for convenience in tests. */
  amqpUrl: string;
  close(): Promise<void>;
}

export async function startBroker(options: Partial<SluiceConfig> & { quiet?: boolean } = {}): Promise<StartedBroker> {
  const cfg: SluiceConfig = { ...DEFAULT_CONFIG, ...options };
  const log = pino({ level: options.quiet ? 'silent' : cfg.logLevel });
  mkdirSync(cfg.dataDir, { recursive: true });
  const broker = await Broker.open({ dataDir: cfg.dataDir, format: amqpMessageFormat, policies: cfg.policies });
  broker.onError = (err, what) => log.error({ err }, `${what} failed`);
  const rec = broker.recovery;
  if (!rec.clean) log.warn({ recovery: rec }, 'recovered after an unclean shutdown');
  const amqp = new AmqpServer(broker, {
    log,
    frameMax: cfg.frameMax,
    channelMax: cfg.channelMax,
    heartbeat: cfg.heartbeat,
    handshakeTimeout: cfg.handshakeTimeout,
    maxMessageSize: cfg.maxMessageSize,
  });
  let amqpPort: number;
  try {
    amqpPort = await amqp.listen(cfg.amqpPort, cfg.host);
  } catch (e) {
    await broker.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  const connectHost = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host;
  return {
    broker,
    amqpPort,
    host: cfg.host,
    amqpUrl: `amqp://guest:guest@${connectHost}:${amqpPort}`,
    close() {
      closing ??= (async () => {
        await amqp.close();
        await broker.close();
      })();
      return closing;
    },
  };
}

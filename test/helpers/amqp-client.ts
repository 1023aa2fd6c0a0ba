/** Small conveniences over amqplib for integration tests. */
import { after, before } from 'node:test';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { removeDir, startTestBroker, type TestBroker } from './test-broker.js';

export type { Channel, ChannelModel, ConsumeMessage };

/** Connects with error handlers attached, so provoked errors never become uncaught ones. */
export async function connect(url: string): Promise<ChannelModel> {
  const c = await amqp.connect(url);
  c.on('error', () => undefined);
  return c;
}

export async function channel(c: ChannelModel): Promise<Channel> {
  const ch = await c.createChannel();
  ch.on('error', () => undefined);
  return ch;
}

/** Consumes `queue` (no-ack unless told) into an array the test can poll. */
export async function collect(ch: Channel, queue: string, noAck = true): Promise<ConsumeMessage[]> {
  const got: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => {
    if (m !== null) got.push(m);
  }, { noAck });
  return got;
}

/** Closes quietly: a connection the broker already closed throws on close(). */
export async function closeQuietly(c: { close(): Promise<void> } | null | undefined): Promise<void> {
  if (!c) return;
  try {
    await c.close();
  } catch {
    // already closed
  }
}

/** Resolves with the error a channel closes with (amqplib sets err.code to the reply code). */
export function channelError(ch: Channel): Promise<Error & { code?: number }> {
  return new Promise((resolve) => ch.once('error', resolve));
}

/** Resolves with the error a connection closes with. */
export function connectionError(c: ChannelModel): Promise<Error & { code?: number }> {
  return new Promise((resolve) => c.once('error', resolve));
}

export const bodies = (ms: ReadonlyArray<{ content: Buffer }>): string[] => ms.map((m) => m.content.toString());

/** One broker for a describe block, and the amqplib connections its tests open. */
export interface SuiteBroker {
  /** The running broker (from the suite's before hook on). */
  readonly broker: TestBroker;
  /** Connects (to the suite's broker unless `url` says otherwise); closed after the suite. */
  open(url?: string): Promise<ChannelModel>;
}

/** Call inside describe(): starts the broker before its tests, closes it and every connection after. */
export function suiteBroker(): SuiteBroker {
  let started: TestBroker | undefined;
  const conns: ChannelModel[] = [];
  before(async () => {
    started = await startTestBroker();
  });
  after(async () => {
    for (const c of conns) await closeQuietly(c);
    if (started === undefined) return;
    await started.close();
    removeDir(started.dataDir);
  });
  const suite: SuiteBroker = {
    get broker(): TestBroker {
      if (started === undefined) throw new Error('the suite broker starts in the before hook');
      return started;
    },
    async open(url?: string): Promise<ChannelModel> {
      const c = await connect(url ?? suite.broker.amqpUrl);
      conns.push(c);
      return c;
    },
  };
  return suite;
}

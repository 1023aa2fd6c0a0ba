/** Small conveniences over amqplib for integration tests. */
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';

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

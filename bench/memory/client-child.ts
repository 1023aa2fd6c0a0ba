/**
 * The AMQP client side of queue-10m.ts, run as a child process (fork) so that its CPU and
 * memory are not the broker's: publishes persistent messages into one durable queue with
 * confirms over TCP, answers checkQueue, and consumes from the head. Driven by IPC messages
 * (ClientCommand in, ClientEvent out).
 *
 * Body (size bytes): seq:u64le connection:u32le seqOnConnection:u64le, then filler. Each
 * connection publishes its messages in order, so a consumer at the head sees every
 * connection's seqOnConnection as 0, 1, 2, ... (the connections interleave among themselves).
 */
import amqp from 'amqplib';

export type ClientCommand =
  | { cmd: 'publish'; url: string; queue: string; count: number; size: number; window: number; connections: number; reportEvery: number }
  | { cmd: 'depth' }
  | { cmd: 'consume'; count: number; prefetch: number }
  | { cmd: 'exit' };

export type ClientEvent =
  | { kind: 'tick'; sent: number; confirmed: number }
  | { kind: 'milestone'; confirmed: number }
  | { kind: 'published'; secs: number; acked: number; nacked: number }
  | { kind: 'depth'; messageCount: number }
  | { kind: 'consumed'; count: number; secs: number; minSeq: number; maxSeq: number; outOfOrder: number; redelivered: number }
  | { kind: 'error'; message: string };

function send(e: ClientEvent): void {
  process.send!(e);
}

let url = '';
let queue = '';

async function publish(c: Extract<ClientCommand, { cmd: 'publish' }>): Promise<void> {
  url = c.url;
  queue = c.queue;
  const setup = await amqp.connect(url);
  const sch = await setup.createChannel();
  await sch.assertQueue(queue, { durable: true });
  await setup.close();
  let nextSeq = 0;
  let sent = 0;
  let acked = 0;
  let nacked = 0;
  let nextMilestone = c.reportEvery;
  const per = Math.max(1, Math.floor(c.window / c.connections));
  const tick = setInterval(() => send({ kind: 'tick', sent, confirmed: acked + nacked }), 1000);
  const started = performance.now();
  const one = async (connIndex: number): Promise<void> => {
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    let outstanding = 0;
    let wake: (() => void) | null = null;
    let failed: Error | null = null;
    ch.on('error', (e: Error) => {
      failed = e;
      wake?.();
    });
    const template = Buffer.alloc(c.size, 0x61);
    template.writeUInt32LE(connIndex, 8);
    let mine = 0;
    for (;;) {
      if (failed) throw failed;
      if (nextSeq >= c.count) break;
      const seq = nextSeq++;
      const body = Buffer.from(template);
      body.writeBigUInt64LE(BigInt(seq), 0);
      body.writeBigUInt64LE(BigInt(mine++), 12);
      outstanding++;
      sent++;
      const ok = ch.sendToQueue(queue, body, { persistent: true }, (err) => {
        outstanding--;
        if (err) nacked++;
        else acked++;
        if (acked + nacked >= nextMilestone) {
          send({ kind: 'milestone', confirmed: nextMilestone });
          nextMilestone += c.reportEvery;
        }
        if (wake && outstanding < per) {
          const w = wake;
          wake = null;
          w();
        }
      });
      if (!ok) await new Promise<void>((r) => ch.once('drain', () => r()));
      if (outstanding >= per) await new Promise<void>((r) => (wake = r));
    }
    while (outstanding > 0) {
      if (failed) throw failed;
      await new Promise<void>((r) => (wake = r));
    }
    await conn.close();
  };
  await Promise.all(Array.from({ length: c.connections }, (_, i) => one(i)));
  clearInterval(tick);
  send({ kind: 'published', secs: (performance.now() - started) / 1000, acked, nacked });
}

async function depth(): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const q = await ch.checkQueue(queue);
  await conn.close();
  send({ kind: 'depth', messageCount: q.messageCount });
}

async function consume(c: Extract<ClientCommand, { cmd: 'consume' }>): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.prefetch(c.prefetch);
  let n = 0;
  let minSeq = Infinity;
  let maxSeq = -1;
  const lastOnConn: number[] = [];
  let outOfOrder = 0;
  let redelivered = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    void ch.consume(queue, (m) => {
      if (m === null || n >= c.count) return;
      const seq = Number(m.content.readBigUInt64LE(0));
      const conn = m.content.readUInt32LE(8);
      const onConn = Number(m.content.readBigUInt64LE(12));
      if (onConn !== (lastOnConn[conn] ?? -1) + 1) outOfOrder++;
      lastOnConn[conn] = onConn;
      if (seq < minSeq) minSeq = seq;
      if (seq > maxSeq) maxSeq = seq;
      if (m.fields.redelivered) redelivered++;
      n++;
      if (n % (c.prefetch >> 1) === 0 || n === c.count) ch.ack(m, true);
      if (n === c.count) resolve();
    });
  });
  const secs = (performance.now() - started) / 1000;
  // Deliveries beyond `count` still in flight go back to the queue when the channel closes.
  // The channel is closed first: channel.close follows the last ack on the same channel,
  // whereas amqplib may write connection.close (channel 0) ahead of a buffered ack.
  await ch.close();
  await conn.close();
  send({ kind: 'consumed', count: n, secs, minSeq, maxSeq, outOfOrder, redelivered });
}

process.on('message', (c: ClientCommand) => {
  const run = c.cmd === 'publish' ? publish(c) : c.cmd === 'depth' ? depth() : c.cmd === 'consume' ? consume(c) : Promise.resolve(process.exit(0));
  run.catch((e: unknown) => send({ kind: 'error', message: (e as Error).stack ?? String(e) }));
});

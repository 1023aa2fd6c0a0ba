/**
 * One amqplib producer to one amqplib consumer, 16-byte transient messages, no acks: the
 * figure the AMQP issue asks for, run with the same script against Sluice and RabbitMQ.
 * Usage: node dist/bench/amqp/transient-throughput.js [amqp-url] [count]
 * Without a URL it starts an embedded Sluice on a free port. Prints one JSON line.
 */
import amqp from 'amqplib';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker } from '../../src/index.js';

async function run(url: string, count: number, size: number): Promise<number> {
  const conn = await amqp.connect(url);
  const pub = await conn.createChannel();
  const sub = await conn.createChannel();
  const q = await pub.assertQueue('', { exclusive: true, durable: false });
  const body = Buffer.alloc(size, 120);
  let received = 0;
  const done = new Promise<void>((resolve) => {
    void sub.consume(q.queue, () => {
      if (++received === count) resolve();
    }, { noAck: true });
  });
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    if (!pub.sendToQueue(q.queue, body)) await new Promise((r) => pub.once('drain', r));
  }
  await done;
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await conn.close();
  return count / secs;
}

const url = process.argv[2];
const count = Number(process.argv[3] ?? 300_000);
const size = Number(process.argv[4] ?? 16);
let target = url;
let stop: (() => Promise<void>) | null = null;
let dir = '';
if (target === undefined || target === '') {
  dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const b = await startBroker({ dataDir: dir, amqpPort: 0, host: '127.0.0.1', quiet: true });
  target = b.amqpUrl;
  stop = () => b.close();
}
const rate = await run(target, count, size);
if (stop) await stop();
if (dir) rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ scenario: 'transient-1p1c', url: url ? url : 'embedded sluice', count, size, msgPerSec: Math.round(rate) }));

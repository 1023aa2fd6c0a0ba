/**
 * Durability under kill -9: the CLI broker runs as a child process; 100,000 persistent messages
 * are published with confirms into a durable queue, several thousand in flight; the broker gets
 * SIGKILL at a random point; after a restart on the same data dir every confirmed message is
 * there exactly once (a duplicate is allowed only as a redelivery), and every body is intact.
 * Two rounds, so the second publishes into a queue recovered from the first crash.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import amqp, { type ConfirmChannel } from 'amqplib';
import { closeQuietly } from '../helpers/amqp-client.js';
import { removeDir, spawnCliBroker, tempDataDir, type BrokerProcess } from '../helpers/test-broker.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const TOTAL = 100_000;
const WINDOW = 4000;
const QUEUE = 'kill9';

/** seq, a filler whose length depends on seq, and a digest over both: corruption shows. */
function bodyFor(seq: number): Buffer {
  const filler = 'x'.repeat(seq % 97);
  const head = `${seq}:${filler}`;
  const digest = createHash('sha1').update(head).digest('hex').slice(0, 12);
  return Buffer.from(`${head}:${digest}`);
}

function parseBody(b: Buffer): number {
  const m = /^(\d+):(x*):([0-9a-f]{12})$/.exec(b.toString());
  assert.ok(m, `malformed body ${JSON.stringify(b.toString().slice(0, 80))}`);
  const seq = Number(m[1]);
  assert.ok(bodyFor(seq).equals(b), `corrupt body for seq ${seq}`);
  return seq;
}

/** SIGKILLs the broker, drops the client's connection, restarts on the same dir and connects again. */
async function killAndRestart(p: BrokerProcess, c: amqp.ChannelModel, dir: string): Promise<{ p: BrokerProcess; c2: amqp.ChannelModel }> {
  p.child.kill('SIGKILL');
  await p.exited;
  await closeQuietly(c);
  const next = await spawnCliBroker(dir, CLI);
  const c2 = await amqp.connect(next.url);
  c2.on('error', () => undefined);
  return { p: next, c2 };
}

describe('durability under kill -9', () => {
  const dir = tempDataDir('sluice-kill9-');
  let proc: BrokerProcess | null = null;

  after(async () => {
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    removeDir(dir);
  });

  /**
   * Publishes seqs [from, from + TOTAL) with confirms and SIGKILLs the broker at a random point.
   * Returns what was published and which were confirmed.
   */
  async function publishAndKill(from: number): Promise<{ published: number; confirmed: Set<number>; nacked: number; killedAt: number; ms: number }> {
    const p = proc!;
    const killAt = from + 10_000 + Math.floor(Math.random() * 80_000);
    const confirmed = new Set<number>();
    let nacked = 0;
    let published = 0;
    const conn = await amqp.connect(p.url);
    conn.on('error', () => undefined);
    const ch: ConfirmChannel = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    await ch.assertQueue(QUEUE, { durable: true });
    let inFlight = 0;
    let wake: (() => void) | null = null;
    let gone = false;
    conn.on('close', () => {
      gone = true;
      wake?.();
    });
    const started = Date.now();
    let killedAt = -1;
    for (let seq = from; seq < from + TOTAL && !gone; seq++) {
      if (seq === killAt) {
        p.child.kill('SIGKILL');
        killedAt = seq;
        break;
      }
      inFlight++;
      published++;
      ch.publish('', QUEUE, bodyFor(seq), { persistent: true }, (err) => {
        inFlight--;
        if (err === null) confirmed.add(seq);
        else nacked++;
        if (inFlight < WINDOW / 2) wake?.();
      });
      if (inFlight >= WINDOW) {
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    }
    assert.ok(killedAt >= 0, `the broker went away before the kill (published ${published})`);
    await p.exited;
    await closeQuietly(conn);
    assert.ok(confirmed.size > 0, 'some messages were confirmed before the kill');
    return { published, confirmed, nacked, killedAt, ms: Date.now() - started };
  }

  test('every confirmed message survives SIGKILL during confirmed publishing (twice)', { timeout: 90_000 }, async () => {
    const confirmed = new Set<number>();
    const publishedSeqs = new Set<number>();
    const rounds: string[] = [];
    for (let round = 0; round < 2; round++) {
      proc = await spawnCliBroker(dir, CLI);
      const from = round * TOTAL;
      const r = await publishAndKill(from);
      for (const s of r.confirmed) confirmed.add(s);
      for (let s = from; s < from + r.published; s++) publishedSeqs.add(s);
      rounds.push(`round ${round}: killed at ${r.killedAt} after ${r.ms} ms, published ${r.published}, confirmed ${r.confirmed.size}, nacked ${r.nacked}`);
    }
    const published = publishedSeqs.size;

    // Restart on the same data dir and take everything.
    proc = await spawnCliBroker(dir, CLI);
    const conn2 = await amqp.connect(proc.url);
    conn2.on('error', () => undefined);
    const ch2 = await conn2.createChannel();
    ch2.on('error', () => undefined);
    const { messageCount } = await ch2.assertQueue(QUEUE, { durable: true });
    assert.ok(messageCount >= confirmed.size, `${messageCount} messages after restart, ${confirmed.size} were confirmed`);
    assert.ok(messageCount <= published, `${messageCount} messages after restart, only ${published} were published`);

    const seen = new Map<number, number>();
    let redelivered = 0;
    await ch2.prefetch(2000);
    await new Promise<void>((resolve, reject) => {
      let got = 0;
      void ch2.consume(QUEUE, (m) => {
        if (m === null) return;
        try {
          const seq = parseBody(m.content);
          if (m.fields.redelivered) redelivered++;
          const n = (seen.get(seq) ?? 0) + 1;
          seen.set(seq, n);
          if (n > 1) assert.ok(m.fields.redelivered, `seq ${seq} delivered twice without the redelivered flag`);
          assert.equal(m.properties.deliveryMode, 2);
          ch2.ack(m);
          if (++got === messageCount) resolve();
        } catch (e) {
          reject(e);
        }
      });
    });
    const missing = [...confirmed].filter((s) => !seen.has(s));
    assert.deepEqual(missing.slice(0, 20), [], `${missing.length} confirmed messages lost`);
    for (const s of seen.keys()) assert.ok(publishedSeqs.has(s), `seq ${s} was never published`);
    // Nothing more after the count the queue reported.
    const extra = await ch2.checkQueue(QUEUE);
    assert.equal(extra.messageCount, 0);
    await closeQuietly(conn2);
    proc.child.kill('SIGTERM');
    await proc.exited;
    console.log(`kill9: ${rounds.join('; ')}; recovered ${messageCount} (${seen.size} distinct, ${redelivered} redelivered) of ${confirmed.size} confirmed`);
  });

  test('messages delivered but not acked before kill -9 come back with redelivered=true; never-delivered ones without it', { timeout: 30_000 }, async () => {
    const d = tempDataDir('sluice-kill9-redeliv-');
    let p = await spawnCliBroker(d, CLI);
    const N = 5000;
    const q = 'redeliv-kill9';
    try {
      const c = await amqp.connect(p.url);
      c.on('error', () => undefined);
      const ch = await c.createConfirmChannel();
      await ch.assertQueue(q, { durable: true });
      for (let i = 0; i < N; i++) ch.sendToQueue(q, Buffer.from(String(i)), { persistent: true });
      await ch.waitForConfirms();
      // Take the first 300 and ack 100 of them; 200 stay delivered and unacked.
      const cch = await c.createChannel();
      await cch.prefetch(300);
      const taken: amqp.ConsumeMessage[] = [];
      await new Promise<void>((resolve) => {
        void cch.consume(q, (m) => {
          if (m === null) return;
          taken.push(m);
          if (taken.length === 300) resolve();
        });
      });
      for (const m of taken.slice(0, 100)) cch.ack(m);
      // The acks are processed in order with what follows on the channel.
      await cch.checkQueue(q);
      await new Promise((r) => setTimeout(r, 200)); // an ack round (page cache only, like the mark)
      let c2: amqp.ChannelModel;
      ({ p, c2 } = await killAndRestart(p, c, d));
      const ch2 = await c2.createChannel();
      const { messageCount } = await ch2.checkQueue(q);
      assert.equal(messageCount, N - 100);
      const flags = new Map<number, boolean>();
      await ch2.prefetch(1000);
      await new Promise<void>((resolve) => {
        void ch2.consume(q, (m) => {
          if (m === null) return;
          flags.set(Number(m.content.toString()), m.fields.redelivered);
          ch2.ack(m);
          if (flags.size === N - 100) resolve();
        });
      });
      for (let i = 100; i < 300; i++) assert.equal(flags.get(i), true, `seq ${i} was delivered before the kill: redelivered`);
      // The mark is reserved a little ahead of the deliveries; far past it nothing is flagged.
      for (let i = 2000; i < N; i++) assert.equal(flags.get(i), false, `seq ${i} was never delivered`);
      await closeQuietly(c2);
    } finally {
      p.child.kill('SIGKILL');
      await p.exited;
      removeDir(d);
    }
  });

  test('an exclusive durable queue does not outlive its connection across kill -9', { timeout: 30_000 }, async () => {
    const d = tempDataDir('sluice-kill9-excl-');
    let p = await spawnCliBroker(d, CLI);
    try {
      const c = await amqp.connect(p.url);
      c.on('error', () => undefined);
      const ch = await c.createChannel();
      await ch.assertQueue('excl-kill9', { durable: true, exclusive: true });
      await ch.assertQueue('plain-kill9', { durable: true });
      let c2: amqp.ChannelModel;
      ({ p, c2 } = await killAndRestart(p, c, d));
      const ch2 = await c2.createChannel();
      ch2.on('error', () => undefined);
      await ch2.checkQueue('plain-kill9');
      // RabbitMQ deletes exclusive queues when their owner goes, a crash included; a survivor
      // would have no owner and be usable by anyone.
      await assert.rejects(ch2.checkQueue('excl-kill9'), /404/);
      await closeQuietly(c2);
    } finally {
      p.child.kill('SIGKILL');
      await p.exited;
      removeDir(d);
    }
  });
});

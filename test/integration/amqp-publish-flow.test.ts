/**
 * Publish flow control with amqplib over TCP: while the broker's timed work is due
 * (Broker.flow held), connections that publish are not read, consumers and their acks go on,
 * and once released every message held back arrives intact and in order. Then the real
 * trigger: delayed messages falling due while a publisher floods the broker.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel } from 'amqplib';
import type { PublishFlow } from '../../src/broker/mod.js';
import { suiteBroker, type ConsumeMessage } from '../helpers/amqp-client.js';
import { sleep, waitFor } from '../helpers/test-broker.js';

describe('publish flow control', () => {
  const suite = suiteBroker();
  const open = suite.open;
  const flow = (): PublishFlow => suite.broker.broker.flow;

  test('while held, publishers are not read but consumers and acks are; on release all arrive in order', async () => {
    const pub = await (await open()).createConfirmChannel();
    const sub = await (await open()).createChannel();
    const q = (await sub.assertQueue('', { exclusive: true })).queue;
    for (let i = 0; i < 50; i++) pub.sendToQueue(q, Buffer.from(`m${i}`));
    await pub.waitForConfirms();

    const f = flow();
    f.nextWorkAt(-Infinity); // timed work running: publishers wait
    let confirmed = 0;
    for (let i = 50; i < 150; i++) pub.sendToQueue(q, Buffer.from(`m${i}`), {}, (err) => err === null && confirmed++);
    await sleep(300);
    assert.equal(confirmed, 0, 'no publish was read while held');
    assert.equal((await sub.checkQueue(q)).messageCount, 50);

    // A consumer (another connection) is served and its acks are read while publishers wait.
    const got: ConsumeMessage[] = [];
    await sub.prefetch(10);
    await sub.consume(q, (m) => {
      if (m === null) return;
      got.push(m);
      sub.ack(m);
    });
    await waitFor(() => got.length === 50, 20_000, 'the 50 stored messages');
    await waitFor(() => f.pauses >= 1, 20_000, 'the publishing connection to be paused');
    assert.equal(confirmed, 0, 'still no publish read while held');

    f.nextWorkAt(Infinity);
    await pub.waitForConfirms();
    assert.equal(confirmed, 100);
    await waitFor(() => got.length === 150, 20_000, 'the held messages');
    assert.deepEqual(
      got.map((m) => m.content.toString()),
      Array.from({ length: 150 }, (_, i) => `m${i}`),
    );
  });

  test('holding and releasing every few milliseconds loses, splits and reorders nothing (multi-frame bodies included)', async () => {
    const c = await open();
    const pub: ConfirmChannel = await c.createConfirmChannel();
    const sub = await (await open()).createChannel();
    const q = (await sub.assertQueue('', { exclusive: true })).queue;
    const got: Buffer[] = [];
    await sub.consume(q, (m) => m !== null && got.push(m.content), { noAck: true });
    const f = flow();
    let on = false;
    const toggler = setInterval(() => {
      on = !on;
      f.nextWorkAt(on ? -Infinity : Infinity);
    }, 3);
    const sizes = [0, 1, 100, 4096, 131072 - 8, 131072, 300_000, 17];
    const sent: Buffer[] = [];
    try {
      for (let i = 0; i < 400; i++) {
        const body = Buffer.alloc(sizes[i % sizes.length]!, i % 251);
        if (body.length >= 4) body.writeUInt32BE(i, 0);
        sent.push(body);
        pub.sendToQueue(q, body);
        if (i % 50 === 49) await pub.waitForConfirms();
      }
      await pub.waitForConfirms();
    } finally {
      clearInterval(toggler);
      f.nextWorkAt(Infinity);
    }
    await waitFor(() => got.length === sent.length, 30_000, 'every message');
    for (let i = 0; i < sent.length; i++) assert.ok(got[i]!.equals(sent[i]!), `message ${i} intact and in order`);
  });

  test('delayed messages due during a publish flood: the publisher is paused and none fires early', async (t) => {
    const ch = await (await open()).createChannel();
    await ch.assertExchange('flow.delayed', 'x-delayed-message', { arguments: { 'x-delayed-type': 'fanout' } });
    const dq = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(dq, 'flow.delayed', '');
    const pub = await (await open()).createConfirmChannel();
    // Far enough ahead that the flood below is running when they fall due, however slowly this
    // machine publishes the 2,000; the flood then goes on until every one has fired.
    const dueAt = Date.now() + 2000;
    for (let i = 0; i < 2000; i++) pub.publish('flow.delayed', '', Buffer.from(String(i)), { headers: { 'x-deliver-at': dueAt + (i % 200) } });
    await pub.waitForConfirms();
    const late: number[] = [];
    await ch.consume(dq, (m) => m !== null && late.push(Date.now() - Number(m.properties.headers!['x-deliver-at'])), { noAck: true });
    // Flood from a second publisher across the due window.
    const sink = (await ch.assertQueue('', { exclusive: true })).queue;
    const pauses = flow().pauses;
    const floodStarted = Date.now();
    const body = Buffer.alloc(64);
    const deadline = Date.now() + 60_000;
    while (late.length < 2000 && Date.now() < deadline) {
      for (let i = 0; i < 500; i++) pub.sendToQueue(sink, body);
      await pub.waitForConfirms();
    }
    await waitFor(() => late.length === 2000, 10_000, 'every delayed message');
    if (floodStarted < dueAt) assert.ok(flow().pauses > pauses, 'the flooding publisher was paused for the delays');
    else t.diagnostic(`setup took past the due time (${floodStarted - dueAt} ms late): pause not checked`);
    assert.ok(Math.min(...late) >= -5, 'none fired early');
  });
});

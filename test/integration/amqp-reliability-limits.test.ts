/**
 * Queue length limits (x-max-length, x-max-length-bytes, x-overflow), priority queues
 * (x-max-priority) and the delivery limit (x-delivery-limit, x-delivery-count), with amqplib
 * over TCP. Everything not marked Sluice-only was checked against RabbitMQ 3.10.8.
 *
 * RabbitMQ facts these tests pin down:
 * - Length limits count ready messages only: a delivered, unacked message does not count.
 * - reject-publish nacks the newest message (the queue keeps the old ones); reject-publish-dlx
 *   also dead-letters it with reason maxlen.
 * - A priority above x-max-priority is treated as x-max-priority (FIFO with the others there).
 * - x-delivery-limit (quorum queues in RabbitMQ): with limit N a message is delivered N + 1
 *   times; the redeliveries carry x-delivery-count 1..N, the first delivery has no such header;
 *   returning it once more dead-letters it with reason delivery_limit.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { GetMessage } from 'amqplib';
import {
  assertXDeath,
  channelErrorCode,
  consumeTimed,
  deadLetterSink,
  drainQueue,
  firstDeath,
  messageCount,
  publishConfirmed,
  Scope,
  sleep,
  sluiceOnly,
  suiteTarget,
  text,
  texts,
  waitFor,
  waitForCount,
  waitForGet,
  withRestartableScope,
  type Channel,
} from '../helpers/reliability.js';

/** The bodies of every message in `q`, taken with basic.get (no ack). */
const drain = async (ch: Channel, q: string): Promise<string[]> => (await drainQueue(ch, q)).map(text);

describe('reliability: length limits, priorities, delivery limit', () => {
  const target = suiteTarget();

  describe('length limits', () => {
    test('x-max-length with the default overflow (drop-head) keeps the newest messages', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.drop', { arguments: { 'x-max-length': 3 } });
      for (let i = 1; i <= 6; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 3);
      assert.deepEqual(await drain(s.ch, q), ['m4', 'm5', 'm6']);
    });

    test('x-max-length-bytes (drop-head) counts body bytes', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.bytes', { arguments: { 'x-max-length-bytes': 10, 'x-overflow': 'drop-head' } });
      for (const b of ['aaaa', 'bbbb', 'cccc', 'dd']) s.ch.sendToQueue(q, Buffer.from(b), { headers: { big: 'x'.repeat(100) } });
      await s.ch.waitForConfirms();
      assert.deepEqual(await drain(s.ch, q), ['bbbb', 'cccc', 'dd']);
    });

    test('only ready messages count: an unacked message does not use up the limit', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.ready', { arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
      assert.equal(await publishConfirmed(s.ch, '', q, 'm1'), true);
      assert.equal(await publishConfirmed(s.ch, '', q, 'm2'), true);
      const m1 = (await s.ch.get(q)) as GetMessage; // unacked
      assert.equal(text(m1), 'm1');
      assert.equal(await publishConfirmed(s.ch, '', q, 'm3'), true, 'one ready + one unacked: room for one more');
      assert.equal(await publishConfirmed(s.ch, '', q, 'm4'), false);
      s.ch.nack(m1, false, true);
      await waitForCount(s.ch, q, 3); // requeued past the limit: requeue is never refused
      assert.deepEqual(await drain(s.ch, q), ['m1', 'm2', 'm3']);
    });

    test('reject-publish: the publisher gets basic.nack for the new message; the queue keeps the old ones', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.reject', { arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
      const results = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((b) => publishConfirmed(s.ch, '', q, b)));
      assert.deepEqual(results, [true, true, false, false]);
      assert.equal(await messageCount(s.ch, q), 2);
      const m = (await s.ch.get(q, { noAck: true })) as GetMessage;
      assert.equal(text(m), 'm1');
      assert.equal(await publishConfirmed(s.ch, '', q, 'm5'), true, 'room again after one is consumed');
      assert.deepEqual(await drain(s.ch, q), ['m2', 'm5']);
    });

    test('reject-publish with x-max-length-bytes', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.reject.bytes', { arguments: { 'x-max-length-bytes': 8, 'x-overflow': 'reject-publish' } });
      assert.equal(await publishConfirmed(s.ch, '', q, 'aaaa'), true);
      assert.equal(await publishConfirmed(s.ch, '', q, 'bbbb'), true);
      assert.equal(await publishConfirmed(s.ch, '', q, 'c'), false);
      assert.deepEqual(await drain(s.ch, q), ['aaaa', 'bbbb']);
    });

    test('reject-publish without confirms: the message is dropped silently, the channel stays open', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('len.reject.noconfirm', { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
      const ch = await s.channel();
      ch.sendToQueue(q, Buffer.from('m1'));
      ch.sendToQueue(q, Buffer.from('m2'));
      await waitForCount(ch, q, 1);
      await sleep(50);
      assert.deepEqual(await drain(ch, q), ['m1']);
    });

    test('reject-publish-dlx: nacked AND dead-lettered with reason maxlen', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('len.rejectdlx', { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish-dlx', 'x-dead-letter-exchange': dlx.exchange } });
      const t0 = Date.now();
      assert.equal(await publishConfirmed(s.ch, '', q, 'kept'), true);
      assert.equal(await publishConfirmed(s.ch, '', q, 'refused', { messageId: 'r' }), false);
      await waitFor(() => dlx.got.length === 1, 3000, 'dead-lettered');
      const d = dlx.got[0]!.m;
      assert.equal(text(d), 'refused');
      assert.equal(d.properties.messageId, 'r');
      assertXDeath(d, [{ count: 1, reason: 'maxlen', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      assert.deepEqual(firstDeath(d), { reason: 'maxlen', queue: q, exchange: '' });
      assert.deepEqual(await drain(s.ch, q), ['kept']);
    });

    test('reject-publish (no -dlx) does not dead-letter the refused message', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('len.rejectnodlx', { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish', 'x-dead-letter-exchange': dlx.exchange } });
      assert.equal(await publishConfirmed(s.ch, '', q, 'kept'), true);
      assert.equal(await publishConfirmed(s.ch, '', q, 'refused'), false);
      await sleep(200);
      assert.equal(dlx.got.length, 0);
    });

    test('a message routed to two queues, one of them full with reject-publish, is nacked but still delivered to the other', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('len.fan', 'fanout');
      const full = await s.queue('len.fan.full', { arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
      const open = await s.queue('len.fan.open');
      await s.ch.bindQueue(full, x, '');
      await s.ch.bindQueue(open, x, '');
      assert.equal(await publishConfirmed(s.ch, x, '', 'both'), false);
      assert.equal(await messageCount(s.ch, open), 1);
      assert.equal(await messageCount(s.ch, full), 0);
    });

    test('an unknown x-overflow value is refused with 406', async (t) => {
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertQueue(`len.bad.${Date.now()}`, { arguments: { 'x-overflow': 'drop-tail' } }));
      assert.equal(code, 406);
    });

    test('a negative x-max-length is refused with 406', async (t) => {
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertQueue(`len.neg.${Date.now()}`, { arguments: { 'x-max-length': -1 } }));
      assert.equal(code, 406);
    });
  });

  describe('priority queues', () => {
    test('higher priority first, FIFO within a priority, no priority = 0', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.order', { arguments: { 'x-max-priority': 10 } });
      const msgs: Array<[string, number | undefined]> = [['low1', 1], ['none', undefined], ['high1', 9], ['mid', 5], ['high2', 9], ['low2', 1], ['zero', 0]];
      for (const [b, p] of msgs) s.ch.sendToQueue(q, Buffer.from(b), p === undefined ? {} : { priority: p });
      await s.ch.waitForConfirms();
      const { got } = await consumeTimed(s.ch, q);
      await waitFor(() => got.length === msgs.length, 3000, 'all deliveries');
      assert.deepEqual(texts(got), ['high1', 'high2', 'mid', 'low1', 'low2', 'none', 'zero']);
      assert.deepEqual(got.map((d) => d.m.properties.priority), [9, 9, 5, 1, 1, undefined, 0]);
    });

    test('low published first, high second: high is consumed first (basic.get too)', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.get', { arguments: { 'x-max-priority': 10 } });
      s.ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
      s.ch.sendToQueue(q, Buffer.from('high'), { priority: 8 });
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 2);
      const first = (await s.ch.get(q, { noAck: true })) as GetMessage;
      assert.equal(text(first), 'high');
      assert.equal(first.fields.messageCount, 1);
      assert.deepEqual(await drain(s.ch, q), ['low']);
    });

    test('a priority above x-max-priority is treated as x-max-priority', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.cap', { arguments: { 'x-max-priority': 5 } });
      s.ch.sendToQueue(q, Buffer.from('p3'), { priority: 3 });
      s.ch.sendToQueue(q, Buffer.from('p5'), { priority: 5 });
      s.ch.sendToQueue(q, Buffer.from('p200'), { priority: 200 });
      s.ch.sendToQueue(q, Buffer.from('p6'), { priority: 6 });
      await s.ch.waitForConfirms();
      // 200 and 6 count as 5: FIFO among the three at 5, then 3.
      assert.deepEqual(await drain(s.ch, q), ['p5', 'p200', 'p6', 'p3']);
    });

    test('requeued messages go back into their priority', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.requeue', { arguments: { 'x-max-priority': 10 } });
      s.ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
      s.ch.sendToQueue(q, Buffer.from('high'), { priority: 9 });
      await s.ch.waitForConfirms();
      const h = (await s.ch.get(q)) as GetMessage;
      assert.equal(text(h), 'high');
      s.ch.sendToQueue(q, Buffer.from('mid'), { priority: 5 });
      await s.ch.waitForConfirms();
      s.ch.nack(h, false, true);
      await waitForCount(s.ch, q, 3);
      assert.deepEqual(await drain(s.ch, q), ['high', 'mid', 'low']);
    });

    test('x-max-priority 255 is accepted; 256 is refused with 406', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.max', { arguments: { 'x-max-priority': 255 } });
      s.ch.sendToQueue(q, Buffer.from('a'), { priority: 1 });
      s.ch.sendToQueue(q, Buffer.from('b'), { priority: 255 });
      await s.ch.waitForConfirms();
      assert.deepEqual(await drain(s.ch, q), ['b', 'a']);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertQueue(`prio.256.${Date.now()}`, { arguments: { 'x-max-priority': 256 } }));
      assert.equal(code, 406);
    });

    test('priority with a length limit: drop-head drops from the head (the highest priority first)', async (t) => {
      // RabbitMQ's priority queue drops the message it would deliver next.
      const s = await Scope.open(t, target);
      const q = await s.queue('prio.len', { arguments: { 'x-max-priority': 10, 'x-max-length': 2 } });
      s.ch.sendToQueue(q, Buffer.from('high'), { priority: 9 });
      s.ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
      s.ch.sendToQueue(q, Buffer.from('mid'), { priority: 5 });
      await s.ch.waitForConfirms();
      assert.deepEqual(await drain(s.ch, q), ['mid', 'low']);
    });
  });

  describe('delivery limit', () => {
    const deliveryLimitScenario = async (s: Scope, q: string, dlxGot: Awaited<ReturnType<typeof deadLetterSink>>['got']): Promise<void> => {
      const cch = await s.channel();
      await cch.prefetch(1);
      const t0 = Date.now();
      const { got } = await consumeTimed(cch, q, { noAck: false, onMessage: (d) => cch.nack(d.m, false, true) });
      s.ch.sendToQueue(q, Buffer.from('poison'), { messageId: 'p1' });
      await waitFor(() => dlxGot.length === 1, 5000, 'dead-lettered after the delivery limit');
      await sleep(100);
      // limit 2: delivered 3 times (the original + 2 redeliveries), then dead-lettered.
      assert.equal(got.length, 3, `deliveries: ${got.length}`);
      assert.deepEqual(got.map((d) => d.m.properties.headers?.['x-delivery-count']), [undefined, 1, 2]);
      assert.deepEqual(got.map((d) => d.m.fields.redelivered), [false, true, true]);
      const d = dlxGot[0]!.m;
      assert.equal(text(d), 'poison');
      assert.equal(d.properties.messageId, 'p1');
      assertXDeath(d, [{ count: 1, reason: 'delivery_limit', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      assert.deepEqual(firstDeath(d), { reason: 'delivery_limit', queue: q, exchange: '' });
      assert.equal(await messageCount(s.ch, q), 0);
    };

    test('quorum queue x-delivery-limit 2: x-delivery-count on redeliveries, then dead-lettered (delivery_limit)', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dlim.quorum', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2, 'x-dead-letter-exchange': dlx.exchange } });
      await deliveryLimitScenario(s, q, dlx.got);
    });

    test('quorum queue: returns by a closed channel count as deliveries too', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dlim.close', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 1, 'x-dead-letter-exchange': dlx.exchange } });
      s.ch.sendToQueue(q, Buffer.from('x'));
      await s.ch.waitForConfirms();
      for (let i = 0; i < 2; i++) {
        const ch = await s.channel();
        const m = (await waitForGet(ch, q)) as GetMessage;
        // RabbitMQ 3.10 puts x-delivery-count 0 on a first basic.get (not on a first consume):
        // absent and 0 are both accepted for the first one.
        assert.equal(m.properties.headers?.['x-delivery-count'] ?? 0, i);
        await ch.close(); // unacked: returned
      }
      await waitFor(() => dlx.got.length === 1, 5000, 'dead-lettered');
      assert.equal((dlx.got[0]!.m.properties.headers?.['x-death'] as Array<{ reason: string }>)[0]!.reason, 'delivery_limit');
    });

    test('quorum queue without a dead-letter exchange: past the limit the message is dropped', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('dlim.drop', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 1 } });
      s.ch.sendToQueue(q, Buffer.from('x'));
      await s.ch.waitForConfirms();
      const cch = await s.channel();
      const { got } = await consumeTimed(cch, q, { noAck: false, onMessage: (d) => cch.nack(d.m, false, true) });
      await waitFor(() => got.length === 2, 5000, 'two deliveries');
      await waitForCount(s.ch, q, 0);
      await sleep(200);
      assert.equal(got.length, 2);
    });

    test('Sluice-only: x-delivery-limit on a classic queue behaves like the quorum one', async (t) => {
      if (sluiceOnly(t, target, 'RabbitMQ supports x-delivery-limit only on quorum queues')) return;
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dlim.classic', { arguments: { 'x-delivery-limit': 2, 'x-dead-letter-exchange': dlx.exchange } });
      await deliveryLimitScenario(s, q, dlx.got);
    });

    test('Sluice-only: the delivery count survives a broker restart (a poison message gets no fresh allowance)', async (t) => {
      if (sluiceOnly(t, target, 'needs a broker restart')) return;
      await withRestartableScope(async (s, restart) => {
        const q = await s.queue('dlim.restart', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2 } });
        s.ch.sendToQueue(q, Buffer.from('poison'), { persistent: true });
        await s.ch.waitForConfirms();
        for (let i = 0; i < 2; i++) {
          const m = await waitForGet(s.ch, q);
          assert.equal(m.properties.headers?.['x-delivery-count'] ?? 0, i);
          s.ch.nack(m, false, true);
        }
        await waitForCount(s.ch, q, 1);
        await restart();
        const m = await waitForGet(s.ch, q);
        assert.equal(m.properties.headers?.['x-delivery-count'], 2, 'the count from before the restart');
        s.ch.nack(m, false, true); // the third return: past the limit, dropped (no dead-letter exchange)
        await waitForCount(s.ch, q, 0);
      });
    });
  });
});

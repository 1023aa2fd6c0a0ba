/**
 * Delayed delivery (exchange type x-delayed-message with x-delayed-type, header x-delay, as
 * the rabbitmq-delayed-message-exchange plugin has them) and retry with backoff (Sluice's queue
 * argument x-retry-delays), with amqplib over TCP and real time. Both are Sluice-only: the
 * delayed-message plugin is not installed in the RabbitMQ used for checking, and x-retry-delays
 * is a Sluice extension. Every test skips itself against SLUICE_TEST_AMQP_URL.
 *
 * Timing bounds: a message never arrives before its delay (less 5 ms of timer slack, measured
 * from just before the client sent it), and arrives less than 500 ms after it (a loaded 2-core
 * machine).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertNotEarly,
  assertNotLate,
  channelErrorCode,
  consumeTimed,
  deadLetterSink,
  firstDeath,
  messageCount,
  now,
  Scope,
  sleep,
  sluiceOnly,
  suiteTarget,
  text,
  texts,
  waitFor,
  withRestartableScope,
  xDeath,
  type Timed,
} from '../helpers/reliability.js';

const DELAYED = 'x-delayed-message';

describe('reliability: delayed delivery and retry with backoff', () => {
  const target = suiteTarget();

  describe('Sluice-only: x-delayed-message exchange', () => {
    const skip = (t: Parameters<typeof sluiceOnly>[0]): boolean => sluiceOnly(t, target, 'the delayed-message plugin is not installed in RabbitMQ');

    /** A delayed exchange of `type` with one queue bound by `key`, consumed into an array. */
    const delayedSetup = async (s: Scope, type: string, key = 'k'): Promise<{ x: string; q: string; got: Timed[] }> => {
      const x = await s.exchange('delay.x', DELAYED, { arguments: { 'x-delayed-type': type } });
      const q = await s.queue('delay.q');
      await s.ch.bindQueue(q, x, key);
      const { got } = await consumeTimed(await s.channel(), q);
      return { x, q, got };
    };

    test('messages arrive no earlier than their delay, in due order (300, 100, 200 → 100, 200, 300)', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct');
      // Each message is due at (broker receipt + delay); receipt lies between the send and the
      // confirm, so the due time lies in [sentAt + delay, confirmedAt + delay]. On an idle
      // machine these windows are far apart and the order must be exactly 100, 200, 300; on a
      // badly overloaded one only pairs whose windows do not overlap are ordered.
      const window = new Map<string, { sentAt: number; confirmedAt: number; delay: number }>();
      const confirmed: Array<Promise<void>> = [];
      for (const delay of [300, 100, 200]) {
        const body = `d${delay}`;
        const w = { sentAt: now(), confirmedAt: Infinity, delay };
        window.set(body, w);
        confirmed.push(new Promise((resolve) => s.ch.publish(x, 'k', Buffer.from(body), { headers: { 'x-delay': delay } }, () => {
          w.confirmedAt = now();
          resolve();
        })));
      }
      await Promise.all(confirmed);
      await waitFor(() => got.length === 3, 5000, 'three delayed deliveries');
      const order = texts(got);
      assert.deepEqual([...order].sort(), ['d100', 'd200', 'd300']);
      for (let i = 0; i < order.length; i++) {
        for (let j = i + 1; j < order.length; j++) {
          const early = window.get(order[i]!)!;
          const late = window.get(order[j]!)!;
          // order[i] arrived first: wrong if it was surely due after order[j].
          assert.ok(!(early.sentAt + early.delay > late.confirmedAt + late.delay), `${order[i]} arrived before ${order[j]} (arrival order ${order.join(', ')})`);
        }
      }
      for (const d of got) {
        const w = window.get(text(d.m))!;
        assertNotEarly(d.at, w.sentAt, w.delay, text(d.m));
        assertNotLate(d.at, w.confirmedAt, w.delay, text(d.m));
      }
    });

    test('nothing is in the queue while the delay runs', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const x = await s.exchange('delay.x', DELAYED, { arguments: { 'x-delayed-type': 'direct' } });
      const q = await s.queue('delay.q');
      await s.ch.bindQueue(q, x, 'k');
      s.ch.publish(x, 'k', Buffer.from('later'), { headers: { 'x-delay': 400 } });
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 0);
      // No AMQP method shows pending delayed messages: the broker API counts and lists them.
      const broker = target.broker!.broker;
      assert.equal(broker.delayedCounts('/').get(x), 1);
      const pending = await broker.browseDelayed('/', x);
      assert.deepEqual(pending.map((m) => [m.routingKey, m.body.toString()]), [['k', 'later']]);
      await waitFor(async () => (await messageCount(s.ch, q)) === 1, 5000, 'delivery after the delay');
      assert.equal(broker.delayedCounts('/').get(x), undefined);
    });

    test('without x-delay (or with 0) a message is routed at once, ahead of earlier delayed ones', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct');
      const t0 = now();
      s.ch.publish(x, 'k', Buffer.from('delayed'), { headers: { 'x-delay': 300 } });
      s.ch.publish(x, 'k', Buffer.from('no header'));
      s.ch.publish(x, 'k', Buffer.from('zero'), { headers: { 'x-delay': 0 } });
      await waitFor(() => got.length === 3, 5000, 'deliveries');
      assert.deepEqual(texts(got), ['no header', 'zero', 'delayed']);
      assert.ok(got[1]!.at - t0 < 250, `immediate ones took ${(got[1]!.at - t0).toFixed(0)} ms`);
    });

    test('x-deliver-at (ms since the epoch) schedules at an absolute time, wins over x-delay, and a past time routes at once', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct');
      const t0 = now();
      const wall = Date.now();
      s.ch.publish(x, 'k', Buffer.from('at+400'), { headers: { 'x-deliver-at': wall + 400, 'x-delay': 50 } });
      s.ch.publish(x, 'k', Buffer.from('at+150'), { headers: { 'x-deliver-at': wall + 150 } });
      s.ch.publish(x, 'k', Buffer.from('past'), { headers: { 'x-deliver-at': wall - 60_000 } });
      await waitFor(() => got.length === 3, 5000, 'deliveries');
      assert.deepEqual(texts(got), ['past', 'at+150', 'at+400']);
      assert.ok(got[0]!.at - t0 < 140, `the past one took ${(got[0]!.at - t0).toFixed(0)} ms`);
      assertNotEarly(got[1]!.at, t0, 150, 'at+150');
      assertNotEarly(got[2]!.at, t0, 400, 'at+400 (x-delay 50 ignored)');
      assertNotLate(got[2]!.at, t0, 400, 'at+400');
    });

    test('properties and headers are kept', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct');
      s.ch.publish(x, 'k', Buffer.from('p'), { headers: { 'x-delay': 50, app: 'orders' }, messageId: 'mid-1', contentType: 'application/json', priority: 3 });
      await waitFor(() => got.length === 1, 5000, 'delivery');
      const m = got[0]!.m;
      assert.equal(m.properties.messageId, 'mid-1');
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.priority, 3);
      assert.equal(m.properties.headers?.['app'], 'orders');
      assert.equal(m.fields.exchange, x);
      assert.equal(m.fields.routingKey, 'k');
    });

    test('x-delayed-type direct routes by key', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct', 'yes');
      s.ch.publish(x, 'no', Buffer.from('wrong key'), { headers: { 'x-delay': 50 } });
      s.ch.publish(x, 'yes', Buffer.from('right key'), { headers: { 'x-delay': 100 } });
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await sleep(150);
      assert.deepEqual(texts(got), ['right key']);
    });

    test('x-delayed-type topic routes by pattern', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'topic', 'order.*');
      s.ch.publish(x, 'order.created', Buffer.from('match'), { headers: { 'x-delay': 100 } });
      s.ch.publish(x, 'invoice.created', Buffer.from('no match'), { headers: { 'x-delay': 50 } });
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await sleep(150);
      assert.deepEqual(texts(got), ['match']);
    });

    test('x-delayed-type fanout reaches every bound queue after the delay', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const x = await s.exchange('delay.fan', DELAYED, { arguments: { 'x-delayed-type': 'fanout' } });
      const q1 = await s.queue('delay.fan.q1');
      const q2 = await s.queue('delay.fan.q2');
      await s.ch.bindQueue(q1, x, '');
      await s.ch.bindQueue(q2, x, 'ignored');
      const a = await consumeTimed(await s.channel(), q1);
      const b = await consumeTimed(await s.channel(), q2);
      const t0 = now();
      s.ch.publish(x, 'whatever', Buffer.from('both'), { headers: { 'x-delay': 150 } });
      await waitFor(() => a.got.length === 1 && b.got.length === 1, 5000, 'both queues');
      assertNotEarly(a.got[0]!.at, t0, 150, 'q1');
      assertNotEarly(b.got[0]!.at, t0, 150, 'q2');
    });

    test('many messages with shuffled delays arrive in due order (a shorter delay published earlier is never overtaken)', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct');
      const delays = Array.from({ length: 25 }, (_, i) => 50 + i * 20);
      for (let i = delays.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [delays[i], delays[j]] = [delays[j]!, delays[i]!];
      }
      const t0 = now();
      for (const d of delays) s.ch.publish(x, 'k', Buffer.from(String(d)), { headers: { 'x-delay': d } });
      await waitFor(() => got.length === delays.length, 5000, 'all deliveries');
      // The broker receives the publishes in order, at times the client cannot see, and a
      // message is due at receipt + delay. So whenever i was published before j with a shorter
      // delay, i is due first, however slowly the broker takes them in.
      const position = new Map(texts(got).map((b, k) => [Number(b), k]));
      const inversions: string[] = [];
      for (let i = 0; i < delays.length; i++) {
        for (let j = i + 1; j < delays.length; j++) {
          if (delays[i]! < delays[j]! && position.get(delays[i]!)! > position.get(delays[j]!)!) inversions.push(`${delays[i]} (sent earlier) after ${delays[j]}`);
        }
      }
      assert.deepEqual(inversions, [], `published ${delays.join(',')}; arrived ${texts(got).join(',')}`);
      for (const d of got) assertNotEarly(d.at, t0, Number(text(d.m)), text(d.m));
    });

    test('a delayed message that routes nowhere is dropped quietly', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, got } = await delayedSetup(s, 'direct', 'bound');
      s.ch.publish(x, 'unbound', Buffer.from('lost'), { headers: { 'x-delay': 50 } });
      s.ch.publish(x, 'bound', Buffer.from('found'), { headers: { 'x-delay': 100 } });
      await waitFor(() => got.length === 1, 5000, 'delivery');
      assert.deepEqual(texts(got), ['found']);
      // the channel is still fine
      s.ch.publish(x, 'bound', Buffer.from('again'));
      await waitFor(() => got.length === 2, 3000, 'delivery');
    });

    test('a delayed message survives a broker restart (durable exchange and queue, persistent message)', async (t) => {
      if (sluiceOnly(t, target, 'needs a broker restart')) return;
      await withRestartableScope(async (s, restart) => {
        const x = await s.exchange('delay.restart', DELAYED, { durable: true, arguments: { 'x-delayed-type': 'direct' } });
        const q = await s.queue('delay.restart.q', { durable: true });
        await s.ch.bindQueue(q, x, 'k');
        const t0 = now();
        s.ch.publish(x, 'k', Buffer.from('survivor'), { persistent: true, headers: { 'x-delay': 1500 } });
        await s.ch.waitForConfirms();
        await restart();
        if (now() - t0 < 1400) assert.equal(await messageCount(s.ch, q), 0, 'not delivered early by the restart');
        const { got } = await consumeTimed(s.ch, q);
        await waitFor(() => got.length >= 1, 8000, 'the delayed message after the restart');
        await sleep(200);
        assert.deepEqual(texts(got), ['survivor']);
        assertNotEarly(got[0]!.at, t0, 1500, 'after restart');
        assert.equal(got[0]!.m.properties.deliveryMode, 2);
      });
    });

    test('declaring x-delayed-message without x-delayed-type is refused with 406', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertExchange(`delay.bad.${Date.now()}`, DELAYED, { durable: false }));
      assert.equal(code, 406);
      const ch2 = await s.channel();
      const code2 = await channelErrorCode(ch2, () => ch2.assertExchange(`delay.self.${Date.now()}`, DELAYED, { durable: false, arguments: { 'x-delayed-type': DELAYED } }));
      assert.equal(code2, 406, 'x-delayed-message cannot be its own x-delayed-type');
    });
  });

  describe('Sluice-only: retry with backoff (x-retry-delays)', () => {
    const skip = (t: Parameters<typeof sluiceOnly>[0]): boolean => sluiceOnly(t, target, 'x-retry-delays is a Sluice extension');

    test('reject/nack without requeue brings the message back after each delay with x-retry-count, then dead-letters it', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('retry.q', { arguments: { 'x-retry-delays': [100, 300], 'x-dead-letter-exchange': dlx.exchange } });
      const cch = await s.channel();
      const settledAt: number[] = [];
      const { got } = await consumeTimed(cch, q, {
        noAck: false,
        onMessage: (d) => {
          settledAt.push(now());
          if (got.length % 2 === 1) cch.reject(d.m, false);
          else cch.nack(d.m, false, false);
        },
      });
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('flaky'), { messageId: 'job-1', headers: { app: 'a' } });
      await waitFor(() => dlx.got.length === 1, 5000, 'dead-lettered after the last retry');
      await sleep(100);
      assert.equal(got.length, 3, 'first delivery + 2 retries');
      assert.deepEqual(got.map((d) => d.m.properties.headers?.['x-retry-count']), [undefined, 1, 2]);
      assert.ok(got.every((d) => text(d.m) === 'flaky' && d.m.properties.messageId === 'job-1' && d.m.properties.headers?.['app'] === 'a'));
      assertNotEarly(got[1]!.at, settledAt[0]!, 100, 'first retry');
      assertNotLate(got[1]!.at, settledAt[0]!, 100, 'first retry');
      assertNotEarly(got[2]!.at, settledAt[1]!, 300, 'second retry');
      assertNotLate(got[2]!.at, settledAt[1]!, 300, 'second retry');
      const d = dlx.got[0]!.m;
      assert.equal(text(d), 'flaky');
      const deaths = xDeath(d);
      assert.equal(deaths[0]!.reason, 'rejected');
      assert.equal(deaths[0]!.queue, q);
      assert.equal(firstDeath(d).reason, 'rejected');
      assert.equal(firstDeath(d).queue, q);
      assert.ok(dlx.got[0]!.at - settledAt[2]! < 500, 'dead-lettered at once after the last reject, no extra delay');
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('without a dead-letter exchange the message is dropped after the last retry', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const q = await s.queue('retry.drop', { arguments: { 'x-retry-delays': [50] } });
      const cch = await s.channel();
      const { got } = await consumeTimed(cch, q, { noAck: false, onMessage: (d) => cch.reject(d.m, false) });
      s.ch.sendToQueue(q, Buffer.from('x'));
      await waitFor(() => got.length === 2, 5000, 'delivery and one retry');
      await sleep(300);
      assert.equal(got.length, 2);
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('while waiting for its retry the message is not in the queue; an ack on a retry ends it', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('retry.wait', { arguments: { 'x-retry-delays': [400], 'x-dead-letter-exchange': dlx.exchange } });
      s.ch.sendToQueue(q, Buffer.from('once'));
      await s.ch.waitForConfirms();
      const m = await s.ch.get(q);
      assert.ok(m !== false);
      s.ch.reject(m, false);
      await sleep(50);
      assert.equal(await messageCount(s.ch, q), 0, 'waiting for the retry');
      await waitFor(async () => (await messageCount(s.ch, q)) === 1, 5000, 'back after the delay');
      const again = await s.ch.get(q);
      assert.ok(again !== false);
      assert.equal(again.properties.headers?.['x-retry-count'], 1);
      s.ch.ack(again);
      await sleep(100);
      assert.equal(dlx.got.length, 0);
    });

    test('requeue=true is an ordinary requeue: no delay, no retry count', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const q = await s.queue('retry.requeue', { arguments: { 'x-retry-delays': [5000] } });
      s.ch.sendToQueue(q, Buffer.from('x'));
      await s.ch.waitForConfirms();
      const m = await s.ch.get(q);
      assert.ok(m !== false);
      s.ch.nack(m, false, true);
      const again = await s.ch.get(q);
      assert.ok(again !== false, 'back at once');
      assert.equal(again.fields.redelivered, true);
      assert.equal(again.properties.headers?.['x-retry-count'], undefined);
      s.ch.ack(again);
    });

    test('x-retry-delays must be an array of non-negative integers (406 otherwise)', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      for (const bad of [[100, -1], ['100'], [1.5], 100, 'fast']) {
        const ch = await s.channel();
        const code = await channelErrorCode(ch, () => ch.assertQueue(`retry.bad.${Date.now()}.${Math.random()}`, { arguments: { 'x-retry-delays': bad } }));
        assert.equal(code, 406, `x-retry-delays ${JSON.stringify(bad)}`);
      }
      await s.queue('retry.ok', { arguments: { 'x-retry-delays': [0, 10, 100000] } });
    });
  });
});

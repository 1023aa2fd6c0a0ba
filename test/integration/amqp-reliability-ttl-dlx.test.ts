/**
 * Message TTL, queue expiry and dead-lettering, with amqplib over TCP, as RabbitMQ 3.10 does
 * them (every test that is not marked Sluice-only was run against RabbitMQ 3.10.8 with
 * SLUICE_TEST_AMQP_URL; see test/helpers/reliability.ts).
 *
 * RabbitMQ facts these tests pin down:
 * - x-death is an array of tables {count, reason, queue, time, exchange, routing-keys} (plus
 *   original-expiration when the message had a per-message expiration, whose `expiration`
 *   property is then removed). `time` is an AMQP timestamp in seconds. The newest death is
 *   first; a repeated (queue, reason) increments its entry's count and moves it to the front,
 *   and keeps the exchange, routing-keys and time of that entry's first occurrence.
 * - x-first-death-reason/-queue/-exchange are set on the first death and never change. 3.10
 *   adds no x-last-death-* headers.
 * - Dead-lettering that would put a message back into a queue it already died in, with no
 *   rejection anywhere in that cycle, drops it (for that queue) instead.
 * - x-message-ttl 0: delivered if a consumer can take it at once, else expired at once.
 * - Classic queues expire only at the head (so a short-TTL message behind a long one waits);
 *   Sluice removes expired messages wherever they are (Sluice-only test).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { GetMessage } from 'amqplib';
import {
  assertNotEarly,
  assertXDeath,
  channelErrorCode,
  consumeTimed,
  deadLetterSink,
  firstDeath,
  messageCount,
  now,
  queueExists,
  Scope,
  sleep,
  sluiceOnly,
  suiteTarget,
  text,
  texts,
  waitFor,
  waitForCount,
  waitForGet,
} from '../helpers/reliability.js';

describe('reliability: TTL, queue expiry and dead-lettering', () => {
  const target = suiteTarget();

  describe('message TTL', () => {
    test('x-message-ttl: messages expire from the queue without a consumer', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('ttl.q', { arguments: { 'x-message-ttl': 150 } });
      for (let i = 0; i < 5; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms(); // enqueued
      await waitForCount(s.ch, q, 0, 5000);
      assert.equal(await s.ch.get(q), false);
    });

    test('per-message expiration: the message expires without a consumer; others stay', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('ttl.msg');
      s.ch.sendToQueue(q, Buffer.from('short'), { expiration: '100' });
      s.ch.sendToQueue(q, Buffer.from('forever'));
      await s.ch.waitForConfirms();
      await waitForCount(s.ch, q, 1, 5000);
      const m = (await s.ch.get(q, { noAck: true })) as GetMessage;
      assert.equal(text(m), 'forever');
    });

    test('queue TTL and message expiration together: the lower one wins, either way round', async (t) => {
      const s = await Scope.open(t, target);
      const longQueue = await s.queue('ttl.both.longq', { arguments: { 'x-message-ttl': 60000 } });
      const shortQueue = await s.queue('ttl.both.shortq', { arguments: { 'x-message-ttl': 100 } });
      const t0 = now();
      s.ch.sendToQueue(longQueue, Buffer.from('short message in long queue'), { expiration: '100' });
      s.ch.sendToQueue(shortQueue, Buffer.from('long message in short queue'), { expiration: '60000' });
      await s.ch.waitForConfirms();
      await waitForCount(s.ch, longQueue, 0, 5000);
      await waitForCount(s.ch, shortQueue, 0, 5000);
      assert.ok(now() - t0 < 10000);
    });

    test('an expired message is never delivered to a consumer that attaches later', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('ttl.late', { arguments: { 'x-message-ttl': 100 } });
      s.ch.sendToQueue(q, Buffer.from('stale'));
      await s.ch.waitForConfirms();
      await waitForCount(s.ch, q, 0, 5000);
      const { got } = await consumeTimed(s.ch, q);
      s.ch.sendToQueue(q, Buffer.from('fresh'));
      await waitFor(() => got.length === 1, 3000, 'fresh delivery');
      await sleep(100);
      assert.deepEqual(texts(got), ['fresh']);
    });

    test('a requeued message keeps its original expiry', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('ttl.requeue', { arguments: { 'x-message-ttl': 300 } });
      const t0 = now();
      s.ch.sendToQueue(q, Buffer.from('a'));
      const m = await waitForGet(s.ch, q);
      s.ch.nack(m, false, true); // back to the queue: the clock is not restarted
      await waitForCount(s.ch, q, 0, 5000);
      // Not a timing assertion on the upper side: just that it did go, and not before its TTL.
      assertNotEarly(now(), t0, 300, 'requeued message expiry');
    });

    test('Sluice-only: a short-TTL message behind a long-TTL one is removed without waiting for the head', async (t) => {
      if (sluiceOnly(t, target, 'RabbitMQ 3.10 classic queues expire only at the head')) return;
      const s = await Scope.open(t, target);
      const q = await s.queue('ttl.behind');
      s.ch.sendToQueue(q, Buffer.from('head'), { expiration: '60000' });
      s.ch.sendToQueue(q, Buffer.from('short'), { expiration: '100' });
      s.ch.sendToQueue(q, Buffer.from('tail'));
      await s.ch.waitForConfirms();
      await waitForCount(s.ch, q, 2, 5000);
      const a = (await s.ch.get(q, { noAck: true })) as GetMessage;
      const b = (await s.ch.get(q, { noAck: true })) as GetMessage;
      assert.deepEqual([text(a), text(b)], ['head', 'tail']);
    });

    test('Sluice-only: an expired message behind a long-TTL head is dead-lettered in time', async (t) => {
      if (sluiceOnly(t, target, 'RabbitMQ 3.10 classic queues expire only at the head')) return;
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('ttl.behind.dlx', { arguments: { 'x-dead-letter-exchange': dlx.exchange } });
      const t0 = now();
      s.ch.sendToQueue(q, Buffer.from('head'), { expiration: '60000' });
      s.ch.sendToQueue(q, Buffer.from('short'), { expiration: '150' });
      await waitFor(() => dlx.got.length === 1, 5000, 'dead-lettered short message');
      assert.equal(text(dlx.got[0]!.m), 'short');
      assertNotEarly(dlx.got[0]!.at, t0, 150, 'dead-lettered short message');
      assert.equal(await messageCount(s.ch, q), 1);
    });

    describe('x-message-ttl 0', () => {
      test('a message is delivered when a consumer can take it at once', async (t) => {
        const s = await Scope.open(t, target);
        const dlx = await deadLetterSink(s);
        const q = await s.queue('ttl0.ready', { arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': dlx.exchange } });
        const cch = await s.channel();
        const { got } = await consumeTimed(cch, q);
        for (let i = 0; i < 3; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
        await waitFor(() => got.length === 3, 3000, 'immediate deliveries');
        await sleep(100);
        assert.deepEqual(texts(got), ['m0', 'm1', 'm2']);
        assert.equal(dlx.got.length, 0, 'nothing expired');
      });

      test('without a consumer the message expires at once (dead-lettered, reason expired)', async (t) => {
        const s = await Scope.open(t, target);
        const dlx = await deadLetterSink(s);
        const q = await s.queue('ttl0.none', { arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': dlx.exchange } });
        const t0 = Date.now();
        s.ch.sendToQueue(q, Buffer.from('nobody'));
        await waitFor(() => dlx.got.length === 1, 3000, 'dead-lettered');
        assert.equal(await messageCount(s.ch, q), 0);
        assert.equal(await s.ch.get(q), false);
        assertXDeath(dlx.got[0]!.m, [{ count: 1, reason: 'expired', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      });

      test('a consumer without credit (prefetch used up) does not save it: it expires', async (t) => {
        const s = await Scope.open(t, target);
        const dlx = await deadLetterSink(s);
        const q = await s.queue('ttl0.credit', { arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': dlx.exchange } });
        const cch = await s.channel();
        await cch.prefetch(1);
        const { got } = await consumeTimed(cch, q, { noAck: false });
        s.ch.sendToQueue(q, Buffer.from('taken'));
        await waitFor(() => got.length === 1, 3000, 'first delivery');
        s.ch.sendToQueue(q, Buffer.from('no credit'));
        await waitFor(() => dlx.got.length === 1, 3000, 'dead-lettered');
        assert.equal(text(dlx.got[0]!.m), 'no credit');
        cch.ack(got[0]!.m);
        await sleep(100);
        assert.deepEqual(texts(got), ['taken']);
      });
    });
  });

  describe('queue expiry (x-expires)', () => {
    test('an unused queue is deleted after x-expires', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('expires.unused', { arguments: { 'x-expires': 200 } });
      s.ch.sendToQueue(q, Buffer.from('with a message in it'));
      // A passive declare counts as use in RabbitMQ (restarts the timer): check more slowly than that.
      await waitForGone(s, q, 200);
    });

    test('a queue with a consumer is not deleted; after the consumer goes, it is', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('expires.used', { arguments: { 'x-expires': 200 } });
      const cch = await s.channel();
      const { consumerTag } = await cch.consume(q, () => undefined, { noAck: true });
      await sleep(700);
      assert.equal(await queueExists(s.conn, q), true, 'kept while consumed');
      await cch.cancel(consumerTag);
      await waitForGone(s, q, 200);
    });

    test('x-expires must be a positive integer (0 → 406)', async (t) => {
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertQueue(`${'expires.zero'}.${Date.now()}`, { arguments: { 'x-expires': 0 } }));
      assert.equal(code, 406);
    });
  });

  describe('dead-lettering', () => {
    test('basic.reject requeue=false: dead-lettered with reason rejected and RabbitMQ 3.10 headers', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.reject', { arguments: { 'x-dead-letter-exchange': dlx.exchange } });
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('bad'), { headers: { app: 'x' }, messageId: 'id-1', contentType: 'text/plain' });
      const m = await waitForGet(s.ch, q);
      s.ch.reject(m, false);
      await waitFor(() => dlx.got.length === 1, 3000, 'dead-lettered');
      const d = dlx.got[0]!.m;
      assert.equal(text(d), 'bad');
      assert.equal(d.fields.exchange, dlx.exchange);
      assert.equal(d.fields.routingKey, q, 'routing key kept when no x-dead-letter-routing-key');
      assert.equal(d.properties.messageId, 'id-1');
      assert.equal(d.properties.contentType, 'text/plain');
      assertXDeath(d, [{ count: 1, reason: 'rejected', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      assert.deepEqual(firstDeath(d), { reason: 'rejected', queue: q, exchange: '' });
      assert.deepEqual(Object.keys(d.properties.headers ?? {}).sort(), ['app', 'x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason']);
      assert.equal(d.properties.headers?.['app'], 'x');
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('basic.nack requeue=false (single and multiple) dead-letters; requeue=true does not', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.nack', { arguments: { 'x-dead-letter-exchange': dlx.exchange } });
      for (let i = 1; i <= 4; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await waitForCount(s.ch, q, 4);
      const ms: GetMessage[] = [];
      for (let i = 0; i < 4; i++) ms.push((await s.ch.get(q)) as GetMessage);
      s.ch.nack(ms[3]!, false, true); // m4 back to the queue
      s.ch.nack(ms[0]!, false, false); // m1
      s.ch.nack(ms[2]!, true, false); // m2, m3
      await waitFor(() => dlx.got.length === 3, 3000, 'dead-lettered');
      assert.deepEqual(texts(dlx.got), ['m1', 'm2', 'm3']);
      for (const d of dlx.got) assert.equal(xDeathReason(d.m), 'rejected');
      assert.equal(await messageCount(s.ch, q), 1);
    });

    test('x-dead-letter-routing-key replaces the routing key; x-death keeps the original keys (including CC)', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await s.exchange('dl.rk.x', 'direct');
      const dead = await s.queue('dl.rk.dead');
      await s.ch.bindQueue(dead, dlx, 'dead-key');
      const src = await s.exchange('dl.rk.src', 'direct');
      const q = await s.queue('dl.rk', { arguments: { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': 'dead-key' } });
      await s.ch.bindQueue(q, src, 'k1');
      const t0 = Date.now();
      s.ch.publish(src, 'k1', Buffer.from('cc'), { CC: ['k2'] });
      const m = await waitForGet(s.ch, q);
      s.ch.reject(m, false);
      const d = await waitForGet(s.ch, dead);
      assert.equal(d.fields.exchange, dlx);
      assert.equal(d.fields.routingKey, 'dead-key');
      assertXDeath(d, [{ count: 1, reason: 'rejected', queue: q, exchange: src, 'routing-keys': ['k1', 'k2'] }], t0);
      assert.deepEqual(firstDeath(d), { reason: 'rejected', queue: q, exchange: src });
    });

    test('expired with a per-message expiration: original-expiration in x-death, expiration property removed', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.expired', { arguments: { 'x-dead-letter-exchange': dlx.exchange } });
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('old'), { expiration: '100', persistent: true });
      await waitFor(() => dlx.got.length === 1, 5000, 'dead-lettered');
      const d = dlx.got[0]!.m;
      assert.equal(d.properties.expiration, undefined, 'expiration removed');
      assert.equal(d.properties.deliveryMode, 2);
      assertXDeath(d, [{ count: 1, reason: 'expired', queue: q, exchange: '', 'routing-keys': [q], 'original-expiration': '100' }], t0);
      assert.deepEqual(firstDeath(d), { reason: 'expired', queue: q, exchange: '' });
    });

    test('messages that expire together are dead-lettered in queue order', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.expire.order', { arguments: { 'x-dead-letter-exchange': dlx.exchange, 'x-message-ttl': 100 } });
      const n = 30;
      for (let i = 1; i <= n; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`)); // many in the same millisecond
      await waitFor(() => dlx.got.length === n, 5000, 'all dead-lettered');
      assert.deepEqual(texts(dlx.got), Array.from({ length: n }, (_, i) => `m${i + 1}`));
    });

    test('unacked messages do not expire; returned after their TTL they are dead-lettered at once', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.expire.requeue', { arguments: { 'x-dead-letter-exchange': dlx.exchange, 'x-message-ttl': 100 } });
      for (let i = 1; i <= 4; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      const held: GetMessage[] = [];
      for (let i = 0; i < 4; i++) held.push(await waitForGet(s.ch, q));
      await sleep(300);
      assert.equal(dlx.got.length, 0, 'not while unacked');
      s.ch.ack(held[2]!);
      s.ch.nack(held[0]!, false, true);
      s.ch.nack(held[3]!, false, true);
      s.ch.nack(held[1]!, false, true);
      await waitFor(() => dlx.got.length === 3, 5000, 'dead-lettered after the requeue');
      // RabbitMQ 3.10 dead-letters them in the order of the nacks (m1, m4, m2): each requeue
      // lands at the head and expires there. The order is not asserted.
      assert.deepEqual(texts(dlx.got).sort(), ['m1', 'm2', 'm4']);
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('expired through the queue TTL: no original-expiration', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.qttl', { arguments: { 'x-dead-letter-exchange': dlx.exchange, 'x-message-ttl': 100 } });
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('old'));
      await waitFor(() => dlx.got.length === 1, 5000, 'dead-lettered');
      assertXDeath(dlx.got[0]!.m, [{ count: 1, reason: 'expired', queue: q, exchange: '', 'routing-keys': [q] }], t0);
    });

    test('a rejected message that expires later: the expiration property is gone after the first death', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await s.exchange('dl.chain.x', 'direct');
      const final = await deadLetterSink(s, 'dl.chain.final');
      const second = await s.queue('dl.chain.b', { arguments: { 'x-dead-letter-exchange': final.exchange, 'x-message-ttl': 100 } });
      await s.ch.bindQueue(second, dlx, 'to-b');
      const first = await s.queue('dl.chain.a', { arguments: { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': 'to-b' } });
      const t0 = Date.now();
      s.ch.sendToQueue(first, Buffer.from('x'), { expiration: '60000' });
      s.ch.reject(await waitForGet(s.ch, first), false);
      await waitFor(() => final.got.length === 1, 5000, 'second death');
      const d = final.got[0]!.m;
      assert.equal(d.properties.expiration, undefined);
      assertXDeath(d, [
        { count: 1, reason: 'expired', queue: second, exchange: dlx, 'routing-keys': ['to-b'] },
        { count: 1, reason: 'rejected', queue: first, exchange: '', 'routing-keys': [first], 'original-expiration': '60000' },
      ], t0);
      assert.deepEqual(firstDeath(d), { reason: 'rejected', queue: first, exchange: '' });
    });

    test('maxlen: drop-head dead-letters the oldest messages with reason maxlen', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await deadLetterSink(s);
      const q = await s.queue('dl.maxlen', { arguments: { 'x-dead-letter-exchange': dlx.exchange, 'x-max-length': 2 } });
      const t0 = Date.now();
      for (let i = 1; i <= 5; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await waitFor(() => dlx.got.length === 3, 3000, 'dead-lettered');
      assert.deepEqual(texts(dlx.got), ['m1', 'm2', 'm3']);
      assertXDeath(dlx.got[0]!.m, [{ count: 1, reason: 'maxlen', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      assert.deepEqual(firstDeath(dlx.got[0]!.m), { reason: 'maxlen', queue: q, exchange: '' });
      assert.equal(await messageCount(s.ch, q), 2);
    });

    test('a dead-letter exchange that does not exist: the message is dropped, the queue works on', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('dl.missing', { arguments: { 'x-dead-letter-exchange': `no-such-exchange.${Date.now()}` } });
      s.ch.sendToQueue(q, Buffer.from('a'));
      s.ch.reject(await waitForGet(s.ch, q), false);
      s.ch.sendToQueue(q, Buffer.from('b'));
      const m = await waitForGet(s.ch, q);
      assert.equal(text(m), 'b');
      s.ch.ack(m);
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('the same (queue, reason) again increments count and moves the entry to the front, keeping its first exchange and keys', async (t) => {
      // A → (reject) → dlx/to-b → B (TTL 50) → (expired) → dlx/to-a → A, twice round.
      const s = await Scope.open(t, target);
      const dlx = await s.exchange('dl.loop.x', 'direct');
      const a = await s.queue('dl.loop.a', { arguments: { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': 'to-b' } });
      const b = await s.queue('dl.loop.b', { arguments: { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': 'to-a', 'x-message-ttl': 50 } });
      await s.ch.bindQueue(a, dlx, 'to-a');
      await s.ch.bindQueue(b, dlx, 'to-b');
      const t0 = Date.now();
      const cch = await s.channel();
      const { got } = await consumeTimed(cch, a, {
        noAck: false,
        onMessage: (d) => (got.length <= 2 ? cch.reject(d.m, false) : cch.ack(d.m)),
      });
      s.ch.sendToQueue(a, Buffer.from('loop'));
      await waitFor(() => got.length === 3, 5000, 'three arrivals at A');
      assert.equal(got[0]!.m.properties.headers?.['x-death'], undefined);
      assertXDeath(got[1]!.m, [
        { count: 1, reason: 'expired', queue: b, exchange: dlx, 'routing-keys': ['to-b'] },
        { count: 1, reason: 'rejected', queue: a, exchange: '', 'routing-keys': [a] },
      ], t0);
      const third = got[2]!.m;
      assertXDeath(third, [
        { count: 2, reason: 'expired', queue: b, exchange: dlx, 'routing-keys': ['to-b'] },
        { count: 2, reason: 'rejected', queue: a, exchange: '', 'routing-keys': [a] },
      ], t0);
      assert.deepEqual(firstDeath(third), { reason: 'rejected', queue: a, exchange: '' });
      assert.equal(third.fields.exchange, dlx);
      assert.equal(third.fields.routingKey, 'to-a');
      await sleep(200);
      assert.equal(got.length, 3, 'acked: the loop stops');
    });

    test('cycle without a rejection: a queue whose TTL dead-letters into itself drops the message once', async (t) => {
      const s = await Scope.open(t, target);
      const dlx = await s.exchange('dl.cycle.x', 'fanout');
      const observer = await s.queue('dl.cycle.observer');
      const q = await s.queue('dl.cycle', { arguments: { 'x-dead-letter-exchange': dlx, 'x-message-ttl': 50 } });
      await s.ch.bindQueue(q, dlx, '');
      await s.ch.bindQueue(observer, dlx, '');
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('round and round'));
      await s.ch.waitForConfirms();
      // The observer (not in the cycle) gets the one dead-lettered copy; the queue itself does not.
      await waitForCount(s.ch, observer, 1, 5000);
      await waitForCount(s.ch, q, 0, 5000);
      await sleep(300);
      assert.equal(await messageCount(s.ch, q), 0, 'dropped, not looping');
      assert.equal(await messageCount(s.ch, observer), 1, 'dead-lettered exactly once');
      const d = (await s.ch.get(observer, { noAck: true })) as GetMessage;
      assertXDeath(d, [{ count: 1, reason: 'expired', queue: q, exchange: '', 'routing-keys': [q] }], t0);
    });

    test('cycle through the default exchange to the same queue: the message is dropped', async (t) => {
      const s = await Scope.open(t, target);
      const name = `dl.cycle.self.${Date.now()}.${Math.random().toString(16).slice(2, 8)}`;
      const q = s.own('queue', name);
      await s.ch.assertQueue(q, { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': q, 'x-message-ttl': 50 } });
      s.ch.sendToQueue(q, Buffer.from('x'));
      await s.ch.waitForConfirms();
      await waitForCount(s.ch, q, 0, 5000);
      await sleep(300);
      assert.equal(await messageCount(s.ch, q), 0);
    });

    test('a cycle that includes a rejection is allowed: the message comes back', async (t) => {
      const s = await Scope.open(t, target);
      const name = `dl.cycle.rej.${Date.now()}.${Math.random().toString(16).slice(2, 8)}`;
      const q = s.own('queue', name);
      await s.ch.assertQueue(q, { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': q } });
      const t0 = Date.now();
      s.ch.sendToQueue(q, Buffer.from('again'));
      s.ch.reject(await waitForGet(s.ch, q), false);
      const back = await waitForGet(s.ch, q);
      s.ch.reject(back, false);
      const third = await waitForGet(s.ch, q);
      s.ch.ack(third);
      assertXDeath(back, [{ count: 1, reason: 'rejected', queue: q, exchange: '', 'routing-keys': [q] }], t0);
      assertXDeath(third, [{ count: 2, reason: 'rejected', queue: q, exchange: '', 'routing-keys': [q] }], t0);
    });
  });
});

function xDeathReason(m: { properties: { headers?: Record<string, unknown> } }): unknown {
  const deaths = m.properties.headers?.['x-death'] as Array<{ reason: unknown }> | undefined;
  return deaths?.[0]?.reason;
}

/** Polls existence no faster than 2×expiry (a passive declare restarts RabbitMQ's timer). */
async function waitForGone(s: Scope, q: string, expiresMs: number, ms = 6000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    await sleep(expiresMs * 2);
    if (!(await queueExists(s.conn, q))) return;
    if (Date.now() > deadline) assert.fail(`queue ${q} was not deleted after x-expires ${expiresMs} ms`);
  }
}

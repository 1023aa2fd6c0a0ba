/**
 * Consumer priorities (x-priority on basic.consume) and single active consumer
 * (x-single-active-consumer), with amqplib over TCP; checked against RabbitMQ 3.10.8.
 *
 * RabbitMQ facts these tests pin down:
 * - The highest-priority consumer with credit gets the messages; lower ones only get what it
 *   cannot take (prefetch used up). Registration order does not matter.
 * - With single active consumer only the first registered consumer gets messages. Closing its
 *   channel requeues its unacked messages at their original positions and the next consumer gets
 *   everything, in order. basic.cancel does not return unacked messages (they stay with the
 *   channel until acked, nacked or the channel closes), and the next consumer gets nothing until
 *   all of them are settled: two consumers never work the queue at the same time.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  channelErrorCode,
  consumeTimed,
  messageCount,
  Scope,
  sleep,
  suiteTarget,
  texts,
  waitFor,
  waitForCount,
} from '../helpers/reliability.js';

describe('reliability: consumer priorities and single active consumer', () => {
  const target = suiteTarget();

  describe('consumer priority (x-priority)', () => {
    test('with credit on both, the higher-priority consumer gets every message', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('cprio.all');
      const lowCh = await s.channel();
      const highCh = await s.channel();
      const low = await consumeTimed(lowCh, q); // registered first, default priority 0
      const high = await consumeTimed(highCh, q, { priority: 10 });
      for (let i = 1; i <= 20; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      await waitFor(() => high.got.length === 20, 3000, 'all to the high-priority consumer');
      await sleep(50);
      assert.equal(low.got.length, 0);
    });

    test('a lower-priority consumer gets only what the higher one has no credit for', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('cprio.credit');
      const highCh = await s.channel();
      await highCh.prefetch(2);
      const lowCh = await s.channel();
      const high = await consumeTimed(highCh, q, { priority: 5, noAck: false });
      const low = await consumeTimed(lowCh, q, { priority: -5, noAck: false });
      for (let i = 1; i <= 5; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      await waitFor(() => high.got.length + low.got.length === 5, 3000, 'deliveries');
      assert.deepEqual(texts(high.got), ['m1', 'm2']);
      assert.deepEqual(texts(low.got), ['m3', 'm4', 'm5']);
      for (const d of low.got) lowCh.ack(d.m);
      // Credit back on the high one: the next messages go to it again.
      highCh.ack(high.got[1]!.m, true);
      await sleep(50);
      s.ch.sendToQueue(q, Buffer.from('m6'));
      s.ch.sendToQueue(q, Buffer.from('m7'));
      await waitFor(() => high.got.length === 4, 3000, 'high again');
      assert.deepEqual(texts(high.got).slice(2), ['m6', 'm7']);
      assert.equal(low.got.length, 3);
    });

    test('equal priorities share the messages', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('cprio.equal');
      const a = await consumeTimed(await s.channel(), q, { priority: 3 });
      const b = await consumeTimed(await s.channel(), q, { priority: 3 });
      for (let i = 0; i < 20; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await waitFor(() => a.got.length + b.got.length === 20, 3000, 'deliveries');
      assert.ok(a.got.length > 0 && b.got.length > 0, `a=${a.got.length} b=${b.got.length}`);
    });

    test('a non-integer x-priority is refused with 406', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('cprio.bad');
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.consume(q, () => undefined, { arguments: { 'x-priority': 'high' } }));
      assert.equal(code, 406);
    });
  });

  describe('single active consumer', () => {
    test('only the first consumer gets messages', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('sac.first', { arguments: { 'x-single-active-consumer': true } });
      const first = await consumeTimed(await s.channel(), q);
      const second = await consumeTimed(await s.channel(), q, { priority: 10 });
      for (let i = 1; i <= 10; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      await waitFor(() => first.got.length === 10, 3000, 'all to the first consumer');
      await sleep(50);
      assert.equal(second.got.length, 0);
      assert.equal((await s.ch.checkQueue(q)).consumerCount, 2);
    });

    test('closing the active consumer\'s channel: the next one gets its unacked messages, in order, then the rest', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('sac.close', { arguments: { 'x-single-active-consumer': true } });
      const aCh = await s.channel();
      await aCh.prefetch(2);
      const a = await consumeTimed(aCh, q, { noAck: false });
      const bCh = await s.channel();
      const b = await consumeTimed(bCh, q, { noAck: false });
      for (let i = 1; i <= 5; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      await waitFor(() => a.got.length === 2, 3000, 'prefetch on the active consumer');
      await sleep(100);
      assert.equal(b.got.length, 0, 'the other consumer waits although the active one is out of credit');
      await aCh.close();
      await waitFor(() => b.got.length === 5, 3000, 'takeover');
      assert.deepEqual(texts(b.got), ['m1', 'm2', 'm3', 'm4', 'm5']);
      assert.deepEqual(b.got.map((d) => d.m.fields.redelivered), [true, true, false, false, false]);
      for (const d of b.got) bCh.ack(d.m);
      await waitForCount(s.ch, q, 0);
    });

    test('cancelling the active consumer: the next one takes over the queue', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('sac.cancel', { arguments: { 'x-single-active-consumer': true } });
      const aCh = await s.channel();
      const a = await consumeTimed(aCh, q);
      const b = await consumeTimed(await s.channel(), q);
      s.ch.sendToQueue(q, Buffer.from('m1'));
      s.ch.sendToQueue(q, Buffer.from('m2'));
      await waitFor(() => a.got.length === 2, 3000, 'first consumer');
      await aCh.cancel(a.consumerTag);
      s.ch.sendToQueue(q, Buffer.from('m3'));
      s.ch.sendToQueue(q, Buffer.from('m4'));
      await waitFor(() => b.got.length === 2, 3000, 'second consumer');
      assert.deepEqual(texts(b.got), ['m3', 'm4']);
      assert.equal(a.got.length, 2);
    });

    test('cancel with unacked messages: the next consumer gets nothing until those are settled, then the requeued ones first', async (t) => {
      // RabbitMQ 3.10: two consumers never work the queue at once. The old channel keeps its
      // unacked messages after basic.cancel; the next consumer starts only when all of them are
      // acked or returned, and a returned one comes first (its original position).
      const s = await Scope.open(t, target);
      const q = await s.queue('sac.cancel.unacked', { arguments: { 'x-single-active-consumer': true } });
      const aCh = await s.channel();
      await aCh.prefetch(2);
      const a = await consumeTimed(aCh, q, { noAck: false });
      const b = await consumeTimed(await s.channel(), q);
      for (let i = 1; i <= 4; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await s.ch.waitForConfirms();
      await waitFor(() => a.got.length === 2, 3000, 'first consumer');
      await aCh.cancel(a.consumerTag);
      await sleep(300);
      assert.equal(b.got.length, 0, 'not while the cancelled consumer still holds unacked messages');
      assert.equal(await messageCount(s.ch, q), 2);
      aCh.ack(a.got[0]!.m); // m1 done
      await sleep(300);
      assert.equal(b.got.length, 0, 'not while m2 is still unacked');
      aCh.nack(a.got[1]!.m, false, true); // m2 back
      await waitFor(() => b.got.length === 3, 3000, 'takeover');
      assert.deepEqual(texts(b.got), ['m2', 'm3', 'm4']);
      assert.deepEqual(b.got.map((d) => d.m.fields.redelivered), [true, false, false]);
    });

    test('a third consumer waits its turn: after the first goes, the second is active, not the third', async (t) => {
      const s = await Scope.open(t, target);
      const q = await s.queue('sac.order', { arguments: { 'x-single-active-consumer': true } });
      const aCh = await s.channel();
      const a = await consumeTimed(aCh, q);
      const b = await consumeTimed(await s.channel(), q);
      const c = await consumeTimed(await s.channel(), q);
      s.ch.sendToQueue(q, Buffer.from('m1'));
      await waitFor(() => a.got.length === 1, 3000, 'a');
      await aCh.close();
      for (let i = 2; i <= 4; i++) s.ch.sendToQueue(q, Buffer.from(`m${i}`));
      await waitFor(() => b.got.length === 3, 3000, 'b');
      await sleep(50);
      assert.equal(c.got.length, 0);
    });

    test('x-single-active-consumer must be a boolean (406 otherwise)', async (t) => {
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertQueue(`sac.bad.${Date.now()}`, { arguments: { 'x-single-active-consumer': 'yes' } }));
      assert.equal(code, 406);
    });
  });
});

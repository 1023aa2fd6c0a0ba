/**
 * "Close an unpaid order after 30 minutes", with 30 minutes shortened to 300 ms, built the two
 * usual ways on the broker:
 *
 * (a) TTL + dead-letter exchange: each order waits in `orders.pending` (x-message-ttl, no
 *     consumer, x-dead-letter-exchange → `orders.expired`). Paying takes the order out of
 *     pending (basic.get, ack the paid one, requeue the others: a requeued message keeps its
 *     original expiry). The closer consumes `orders.expired` and sees only unpaid orders, after
 *     the TTL. Runs against RabbitMQ 3.10 too.
 * (b) Delayed check: each order publishes a "check" message with x-delay to an
 *     x-delayed-message exchange; the checker closes the order only if it is still unpaid.
 *     Sluice-only (the delayed-message plugin is not installed in RabbitMQ here).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { GetMessage } from 'amqplib';
import {
  assertNotEarly,
  assertNotLate,
  assertXDeath,
  consumeTimed,
  messageCount,
  now,
  Scope,
  sleep,
  sluiceOnly,
  suiteTarget,
  text,
  texts,
  waitFor,
  type Channel,
} from '../helpers/reliability.js';

const PAY_WINDOW_MS = 300;

describe('reliability: closing unpaid orders after a timeout', () => {
  const target = suiteTarget();

  test('(a) TTL + dead-letter exchange: only unpaid orders reach the closer, after the pay window', async (t) => {
    const s = await Scope.open(t, target);
    const expired = await s.queue('orders.expired', { durable: true });
    const pending = await s.queue('orders.pending', {
      durable: true,
      arguments: { 'x-message-ttl': PAY_WINDOW_MS, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': expired },
    });
    const closerCh = await s.channel();
    const closed = await consumeTimed(closerCh, expired, { noAck: false, onMessage: (d) => closerCh.ack(d.m) });

    const placedAt = new Map<string, number>();
    const wallStart = Date.now();
    for (const id of ['o1', 'o2', 'o3', 'o4']) {
      placedAt.set(id, now());
      s.ch.sendToQueue(pending, Buffer.from(id), { persistent: true, messageId: id, contentType: 'text/plain' });
    }
    await s.ch.waitForConfirms();

    // The customers of o1 and o3 pay within the window.
    await sleep(50);
    const payCh = await s.channel();
    const payStart = now();
    const paidIds = await pay(payCh, pending, new Set(['o1', 'o3']));
    assert.deepEqual(paidIds, ['o1', 'o3'], `both paid orders found pending (payment ran ${(payStart - placedAt.get('o4')!).toFixed(0)} ms after the orders)`);

    await waitFor(() => closed.got.length === 2, 5000, 'the closer gets the unpaid orders');
    await sleep(PAY_WINDOW_MS); // nothing else comes
    // (Which unpaid order is closed first is not the point: on an overloaded machine the payment
    // step may hold them past their expiry, and then they die in the order they are returned.)
    assert.deepEqual(texts(closed.got).sort(), ['o2', 'o4']);
    for (const d of closed.got) {
      assertNotEarly(d.at, placedAt.get(text(d.m))!, PAY_WINDOW_MS, `closing ${text(d.m)}`);
      assertNotLate(d.at, placedAt.get(text(d.m))!, PAY_WINDOW_MS, `closing ${text(d.m)}`, 1000);
      assert.equal(d.m.properties.messageId, text(d.m));
      assert.equal(d.m.properties.deliveryMode, 2);
      assertXDeath(d.m, [{ count: 1, reason: 'expired', queue: pending, exchange: '', 'routing-keys': [pending] }], wallStart);
    }
    assert.equal(await messageCount(s.ch, pending), 0);
  });

  test('(b) Sluice-only: delayed check message: the checker closes only unpaid orders', async (t) => {
    if (sluiceOnly(t, target, 'the delayed-message plugin is not installed in RabbitMQ')) return;
    const s = await Scope.open(t, target);
    const checks = await s.exchange('orders.checks', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } });
    const checkQueue = await s.queue('orders.check', { durable: true });
    await s.ch.bindQueue(checkQueue, checks, 'check');

    // The "database": order id → paid. The checker looks it up when the check fires.
    const paid = new Map<string, boolean>();
    const closedOrders: string[] = [];
    const checkedAt = new Map<string, number>();
    const checkerCh = await s.channel();
    await consumeTimed(checkerCh, checkQueue, {
      noAck: false,
      onMessage: (d) => {
        const id = text(d.m);
        checkedAt.set(id, d.at);
        if (paid.get(id) === false) closedOrders.push(id);
        checkerCh.ack(d.m);
      },
    });

    const placedAt = new Map<string, number>();
    for (const id of ['o1', 'o2', 'o3', 'o4']) {
      paid.set(id, false);
      placedAt.set(id, now());
      s.ch.publish(checks, 'check', Buffer.from(id), { persistent: true, headers: { 'x-delay': PAY_WINDOW_MS } });
    }
    await s.ch.waitForConfirms();
    await sleep(50);
    paid.set('o2', true);
    paid.set('o4', true);

    await waitFor(() => checkedAt.size === 4, 5000, 'every order checked');
    assert.deepEqual(closedOrders, ['o1', 'o3']);
    for (const [id, at] of checkedAt) {
      assertNotEarly(at, placedAt.get(id)!, PAY_WINDOW_MS, `check of ${id}`);
      assertNotLate(at, placedAt.get(id)!, PAY_WINDOW_MS, `check of ${id}`);
    }
  });
});

/**
 * The payment side of (a): takes every pending order out with basic.get, acks the paid ones and
 * returns the rest (requeue keeps their position and their original expiry). Returns the ids it
 * found and acked.
 */
async function pay(ch: Channel, pending: string, ids: Set<string>): Promise<string[]> {
  const held: GetMessage[] = [];
  const paid: string[] = [];
  for (;;) {
    const m = await ch.get(pending);
    if (m === false) break;
    if (ids.has(text(m))) {
      ch.ack(m);
      paid.push(text(m));
    } else held.push(m);
  }
  for (const m of held) ch.nack(m, false, true);
  return paid;
}

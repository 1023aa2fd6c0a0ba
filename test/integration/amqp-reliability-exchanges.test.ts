/**
 * The consistent-hash exchange (x-consistent-hash, as RabbitMQ's
 * rabbitmq_consistent_hash_exchange plugin has it) and message deduplication (Sluice's take on
 * the rabbitmq-message-deduplication plugin), with amqplib over TCP.
 *
 * The consistent-hash tests ran against RabbitMQ 3.10.8 with the plugin enabled
 * (`rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`). Against an external broker
 * without the plugin they fail on the exchange declare (503 unknown exchange type). The
 * deduplication tests are Sluice-only (the plugin is not installed there).
 *
 * What is asserted of the consistent-hash exchange: the binding key is the weight; one routing
 * key (or `hash-header` value, or `hash-property` value) always lands in the same queue, so the
 * order per key holds; equal weights spread distinct keys roughly evenly; the weights skew it.
 * Not asserted: that unbinding one queue leaves the other keys in place. RabbitMQ 3.10 rebuilds
 * its ring on unbind and moves keys between the remaining queues too.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel, Options } from 'amqplib';
import {
  channelErrorCode,
  drainQueue,
  messageCount,
  Scope,
  sleep,
  sluiceOnly,
  suiteTarget,
  text,
  waitForCount,
  withRestartableScope,
  type Channel,
} from '../helpers/reliability.js';

/** Body and routing key of every message in `q`, taken with basic.get (no ack). */
async function drain(ch: Channel, q: string): Promise<Array<{ body: string; rk: string }>> {
  return (await drainQueue(ch, q)).map((m) => ({ body: text(m), rk: m.fields.routingKey }));
}

/** The bodies of every message in `q`, taken with basic.get (no ack). */
async function bodies(ch: Channel, q: string): Promise<string[]> {
  return (await drain(ch, q)).map((m) => m.body);
}

/** Declares `n` queues bound to `x` with the given weights ("1" each by default). */
async function hashQueues(s: Scope, x: string, n: number, weights: string[] = []): Promise<string[]> {
  const qs: string[] = [];
  for (let i = 0; i < n; i++) {
    const q = await s.queue(`chx.q${i}`);
    await s.ch.bindQueue(q, x, weights[i] ?? '1');
    qs.push(q);
  }
  return qs;
}

/** Publishes with confirms, `window` at a time so a large batch does not swamp the socket. */
async function publishMany(ch: ConfirmChannel, x: string, items: Array<{ rk: string; body: string; options?: Options.Publish }>, window = 1000): Promise<void> {
  for (let i = 0; i < items.length; i += window) {
    for (const it of items.slice(i, i + window)) ch.publish(x, it.rk, Buffer.from(it.body), it.options ?? {});
    await ch.waitForConfirms();
  }
}

/** Where each key's messages were found: the queues (in `qs` order) and the bodies, in queue order. */
interface KeyPlacement {
  queues: Set<string>;
  bodies: string[];
}

/** Drains every queue in `qs` and groups what it held by `keyOf(message)`. */
async function placeByKey(ch: Channel, qs: string[], keyOf: (m: { body: string; rk: string }) => string): Promise<Map<string, KeyPlacement>> {
  const where = new Map<string, KeyPlacement>();
  for (const q of qs) {
    for (const m of await drain(ch, q)) {
      const key = keyOf(m);
      const p = where.get(key) ?? { queues: new Set<string>(), bodies: [] };
      p.queues.add(q);
      p.bodies.push(m.body);
      where.set(key, p);
    }
  }
  return where;
}

/** The key of a `<key>#<round>` body. */
const bodyKey = (m: { body: string }): string => m.body.split('#')[0]!;

/** Asserts that the keys landed on at least 3 of the 4 queues (`what` names the keys in the message). */
function assertSpread(where: Map<string, KeyPlacement>, what: string): void {
  const used = new Set([...where.values()].map((p) => [...p.queues][0]));
  assert.ok(used.size >= 3, `${what} spread over ${used.size} of 4 queues`);
}

describe('reliability: consistent-hash and deduplication exchanges', () => {
  const target = suiteTarget();

  describe('x-consistent-hash', () => {
    test('the same routing key always goes to the same queue, in publish order', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('chx.same', 'x-consistent-hash');
      const qs = await hashQueues(s, x, 4);
      const items: Array<{ rk: string; body: string }> = [];
      for (let round = 0; round < 5; round++) for (let k = 0; k < 60; k++) items.push({ rk: `key-${k}`, body: `key-${k}#${round}` });
      await publishMany(s.ch, x, items);
      const where = await placeByKey(s.ch, qs, (m) => m.rk);
      let total = 0;
      for (const p of where.values()) total += p.bodies.length;
      assert.equal(total, items.length, 'every message routed to exactly one queue');
      for (const [rk, p] of where) {
        assert.equal(p.queues.size, 1, `${rk} went to ${p.queues.size} queues`);
        assert.deepEqual(p.bodies, [0, 1, 2, 3, 4].map((r) => `${rk}#${r}`));
      }
      assertSpread(where, '60 keys');
    });

    test('equal weights: 10,000 distinct keys spread evenly over 4 queues (15%–35% each)', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('chx.even', 'x-consistent-hash');
      const qs = await hashQueues(s, x, 4);
      const n = 10_000;
      const items = Array.from({ length: n }, (_, i) => ({ rk: `order-${i}`, body: '' }));
      await publishMany(s.ch, x, items);
      const counts: number[] = [];
      for (const q of qs) counts.push(await messageCount(s.ch, q));
      assert.equal(counts.reduce((a, b) => a + b, 0), n);
      for (const c of counts) assert.ok(c >= 0.15 * n && c <= 0.35 * n, `counts ${counts.join(', ')}`);
    });

    test('weights skew the spread: weight 3 against weight 1 takes about three quarters', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('chx.weights', 'x-consistent-hash');
      const [light, heavy] = await hashQueues(s, x, 2, ['1', '3']);
      const n = 4000;
      await publishMany(s.ch, x, Array.from({ length: n }, (_, i) => ({ rk: `w-${i}`, body: '' })));
      const h = await messageCount(s.ch, heavy!);
      const l = await messageCount(s.ch, light!);
      assert.equal(h + l, n);
      assert.ok(h >= 0.6 * n && h <= 0.9 * n, `heavy ${h}, light ${l}`);
    });

    test('hash-header: the header value is hashed, not the routing key', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('chx.header', 'x-consistent-hash', { arguments: { 'hash-header': 'h' } });
      const qs = await hashQueues(s, x, 4);
      const items: Array<{ rk: string; body: string; options: Options.Publish }> = [];
      for (let k = 0; k < 40; k++) for (let r = 0; r < 3; r++) items.push({ rk: `random-${Math.random()}`, body: `h${k}#${r}`, options: { headers: { h: `user-${k}` } } });
      await publishMany(s.ch, x, items);
      const where = await placeByKey(s.ch, qs, bodyKey);
      assert.equal(where.size, 40);
      for (const [k, p] of where) assert.equal(p.queues.size, 1, `${k} (one header value, many routing keys) went to ${p.queues.size} queues`);
      assertSpread(where, '40 header values');
    });

    test('hash-property message_id: the message id is hashed', async (t) => {
      const s = await Scope.open(t, target);
      const x = await s.exchange('chx.prop', 'x-consistent-hash', { arguments: { 'hash-property': 'message_id' } });
      const qs = await hashQueues(s, x, 4);
      const items: Array<{ rk: string; body: string; options: Options.Publish }> = [];
      for (let k = 0; k < 40; k++) for (let r = 0; r < 3; r++) items.push({ rk: `random-${Math.random()}`, body: `id${k}#${r}`, options: { messageId: `msg-${k}` } });
      await publishMany(s.ch, x, items);
      const where = await placeByKey(s.ch, qs, bodyKey);
      assert.equal(where.size, 40);
      for (const [k, p] of where) assert.equal(p.queues.size, 1, `${k} went to ${p.queues.size} queues`);
      assertSpread(where, '40 message ids');
    });

    test('Sluice-only: after a restart the same keys go to the same queues', async (t) => {
      if (sluiceOnly(t, target, 'needs a broker restart')) return;
      await withRestartableScope(async (s, restart) => {
        const x = await s.exchange('chx.restart', 'x-consistent-hash', { durable: true });
        const qs: string[] = [];
        for (let i = 0; i < 4; i++) {
          const q = await s.queue(`chx.restart.q${i}`, { durable: true });
          await s.ch.bindQueue(q, x, '1');
          qs.push(q);
        }
        const keys = Array.from({ length: 300 }, (_, i) => `cust-${i}`);
        const mapping = async (sc: Scope): Promise<Map<string, string>> => {
          await publishMany(sc.ch, x, keys.map((k) => ({ rk: k, body: k, options: { persistent: true } })));
          const m = new Map<string, string>();
          for (const q of qs) for (const d of await drain(sc.ch, q)) m.set(d.body, q);
          return m;
        };
        const before = await mapping(s);
        assert.equal(before.size, keys.length);
        await restart();
        await s.ch.checkExchange(x);
        const afterRestart = await mapping(s);
        assert.deepEqual([...afterRestart.entries()].sort(), [...before.entries()].sort());
      });
    });
  });

  describe('Sluice-only: message deduplication', () => {
    const DEDUP = 'x-message-deduplication';
    const skip = (t: Parameters<typeof sluiceOnly>[0]): boolean => sluiceOnly(t, target, 'the deduplication plugin is not installed in RabbitMQ');

    /** A deduplication exchange (`x-cache-size`, `x-cache-ttl`) with one queue bound to it. */
    const dedupExchange = async (s: Scope, prefix: string, cacheSize: number, cacheTtl: number): Promise<{ x: string; q: string }> => {
      const x = await s.exchange(prefix, DEDUP, { arguments: { 'x-cache-size': cacheSize, 'x-cache-ttl': cacheTtl } });
      const q = await s.queue(`${prefix}.q`);
      await s.ch.bindQueue(q, x, '');
      return { x, q };
    };

    test('exchange: a second message with the same x-deduplication-header within the TTL is not routed; after the TTL it is', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, q } = await dedupExchange(s, 'dedup.x', 100, 300);
      const pub = (body: string, key: string): void => void s.ch.publish(x, 'any-key', Buffer.from(body), { headers: { 'x-deduplication-header': key } });
      const t0 = Date.now();
      pub('a1', 'A');
      pub('a2 (dup)', 'A');
      pub('b1', 'B');
      await s.ch.waitForConfirms();
      assert.deepEqual(await bodies(s.ch, q), ['a1', 'b1']);
      await sleep(Math.max(0, t0 + 450 - Date.now()));
      pub('a3 (after the TTL)', 'A');
      await s.ch.waitForConfirms();
      assert.deepEqual(await bodies(s.ch, q), ['a3 (after the TTL)']);
    });

    test('exchange: without x-deduplication-header the message id is the key; with neither, nothing is deduplicated', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const { x, q } = await dedupExchange(s, 'dedup.mid', 100, 60000);
      s.ch.publish(x, '', Buffer.from('id1'), { messageId: 'm-1' });
      s.ch.publish(x, '', Buffer.from('id1 again'), { messageId: 'm-1' });
      s.ch.publish(x, '', Buffer.from('id2'), { messageId: 'm-2' });
      s.ch.publish(x, '', Buffer.from('plain'));
      s.ch.publish(x, '', Buffer.from('plain'));
      await s.ch.waitForConfirms();
      assert.deepEqual(await bodies(s.ch, q), ['id1', 'id2', 'plain', 'plain']);
    });

    test('exchange: routes like fanout, to every bound queue whatever the keys', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const x = await s.exchange('dedup.fan', DEDUP, { arguments: { 'x-cache-size': 10, 'x-cache-ttl': 60000 } });
      const q1 = await s.queue('dedup.fan.q1');
      const q2 = await s.queue('dedup.fan.q2');
      await s.ch.bindQueue(q1, x, 'one');
      await s.ch.bindQueue(q2, x, 'two');
      s.ch.publish(x, 'three', Buffer.from('m'), { headers: { 'x-deduplication-header': 'k' } });
      s.ch.publish(x, 'one', Buffer.from('dup'), { headers: { 'x-deduplication-header': 'k' } });
      await s.ch.waitForConfirms();
      assert.deepEqual(await bodies(s.ch, q1), ['m']);
      assert.deepEqual(await bodies(s.ch, q2), ['m']);
    });

    test('queue x-message-deduplication: a key already in the queue (not yet acked) is not enqueued; after the ack it is', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const q = await s.queue('dedup.q', { arguments: { 'x-message-deduplication': true } });
      const pub = (body: string, key?: string): void => void s.ch.sendToQueue(q, Buffer.from(body), key === undefined ? {} : { headers: { 'x-deduplication-header': key } });
      pub('k1', 'K1');
      pub('k1 dup', 'K1');
      pub('k2', 'K2');
      pub('no key');
      pub('no key');
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 4);
      const first = await s.ch.get(q);
      assert.ok(first !== false && text(first) === 'k1');
      pub('k1 while unacked', 'K1');
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 3, 'still in the queue (unacked): refused');
      s.ch.nack(first, false, true); // back in the queue: still there, still a duplicate
      await waitForCount(s.ch, q, 4);
      pub('k1 after requeue', 'K1');
      await s.ch.waitForConfirms();
      assert.equal(await messageCount(s.ch, q), 4);
      const again = await s.ch.get(q);
      assert.ok(again !== false && text(again) === 'k1');
      s.ch.ack(again);
      pub('k1 after ack', 'K1');
      await s.ch.waitForConfirms();
      assert.deepEqual(await bodies(s.ch, q), ['k2', 'no key', 'no key', 'k1 after ack']);
    });

    test('the exchange cache survives a broker restart', async (t) => {
      if (sluiceOnly(t, target, 'needs a broker restart')) return;
      await withRestartableScope(async (s, restart) => {
        const x = await s.exchange('dedup.restart', DEDUP, { durable: true, arguments: { 'x-cache-size': 100, 'x-cache-ttl': 60000 } });
        const q = await s.queue('dedup.restart.q', { durable: true });
        await s.ch.bindQueue(q, x, '');
        s.ch.publish(x, '', Buffer.from('before'), { persistent: true, headers: { 'x-deduplication-header': 'K' } });
        await s.ch.waitForConfirms();
        await restart();
        s.ch.publish(x, '', Buffer.from('after, dup'), { persistent: true, headers: { 'x-deduplication-header': 'K' } });
        s.ch.publish(x, '', Buffer.from('after, new'), { persistent: true, headers: { 'x-deduplication-header': 'L' } });
        await s.ch.waitForConfirms();
        assert.deepEqual(await bodies(s.ch, q), ['before', 'after, new']);
      });
    });

    test('invalid cache arguments are refused with 406', async (t) => {
      if (skip(t)) return;
      const s = await Scope.open(t, target);
      const ch = await s.channel();
      const code = await channelErrorCode(ch, () => ch.assertExchange(`dedup.bad.${Date.now()}`, DEDUP, { durable: false, arguments: { 'x-cache-size': -1 } }));
      assert.equal(code, 406);
    });
  });
});

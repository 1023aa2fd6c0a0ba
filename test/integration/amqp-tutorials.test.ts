/**
 * RabbitMQ's six tutorials (https://www.rabbitmq.com/tutorials), each done with amqplib over
 * TCP against a real broker: hello world, work queues, publish/subscribe, routing, topics, RPC.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { bodies, channel, collect, suiteBroker, type ConsumeMessage } from '../helpers/amqp-client.js';
import { sleep, waitFor } from '../helpers/test-broker.js';

describe('RabbitMQ tutorials with amqplib', () => {
  const { open } = suiteBroker();

  test('1. hello world', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertQueue('hello', { durable: false });
    const got = await collect(ch, 'hello');
    ch.sendToQueue('hello', Buffer.from('Hello World!'));
    await waitFor(() => got.length === 1, 5000, 'hello');
    assert.equal(got[0]!.content.toString(), 'Hello World!');
    assert.equal(got[0]!.fields.routingKey, 'hello');
    assert.equal(got[0]!.fields.exchange, '');
    assert.equal(got[0]!.fields.redelivered, false);
  });

  test('2. work queues: fair dispatch with prefetch 1, manual acks, durable queue, persistent messages', async () => {
    const pub = await channel(await open());
    const q = 'task_queue';
    const decl = await pub.assertQueue(q, { durable: true });
    assert.equal(decl.queue, q);
    const done: Record<string, string[]> = { fast: [], slow: [] };
    const worker = async (name: 'fast' | 'slow', delayMs: number): Promise<void> => {
      const ch = await channel(await open());
      await ch.assertQueue(q, { durable: true });
      await ch.prefetch(1);
      await ch.consume(q, (m) => {
        if (m === null) return;
        assert.equal(m.properties.deliveryMode, 2);
        setTimeout(() => {
          done[name]!.push(m.content.toString());
          ch.ack(m);
        }, delayMs);
      }, { noAck: false });
    };
    await worker('slow', 150);
    await worker('fast', 5);
    const n = 30;
    for (let i = 0; i < n; i++) pub.sendToQueue(q, Buffer.from(`task ${i}`), { persistent: true });
    await waitFor(() => done['fast']!.length + done['slow']!.length === n, 10000, 'all tasks');
    const all = [...done['fast']!, ...done['slow']!].sort();
    assert.deepEqual(all, Array.from({ length: n }, (_, i) => `task ${i}`).sort(), 'each task done exactly once');
    assert.ok(done['slow']!.length >= 1, 'the slow worker got some work');
    assert.ok(done['fast']!.length > done['slow']!.length * 2, `fast ${done['fast']!.length} vs slow ${done['slow']!.length}`);
    const after = await pub.checkQueue(q);
    assert.equal(after.messageCount, 0);
  });

  test('3. publish/subscribe: fanout to exclusive server-named queues', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('logs', 'fanout', { durable: false });
    const subs: ConsumeMessage[][] = [];
    for (let i = 0; i < 2; i++) {
      const sc = await channel(await open());
      const { queue } = await sc.assertQueue('', { exclusive: true });
      assert.match(queue, /^amq\.gen-/);
      await sc.bindQueue(queue, 'logs', '');
      subs.push(await collect(sc, queue));
    }
    for (let i = 0; i < 5; i++) ch.publish('logs', 'ignored', Buffer.from(`log ${i}`));
    await waitFor(() => subs.every((s) => s.length === 5), 5000, 'fanout');
    for (const s of subs) assert.deepEqual(bodies(s), ['log 0', 'log 1', 'log 2', 'log 3', 'log 4']);
  });

  test('4. routing: direct exchange with several binding keys', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('direct_logs', 'direct', { durable: false });
    const sub = await channel(c);
    const errorsOnly = (await sub.assertQueue('', { exclusive: true })).queue;
    await sub.bindQueue(errorsOnly, 'direct_logs', 'error');
    const everything = (await sub.assertQueue('', { exclusive: true })).queue;
    for (const sev of ['info', 'warning', 'error']) await sub.bindQueue(everything, 'direct_logs', sev);
    const a = await collect(sub, errorsOnly);
    const b = await collect(sub, everything);
    for (const sev of ['info', 'warning', 'error', 'debug', 'error']) ch.publish('direct_logs', sev, Buffer.from(sev));
    await waitFor(() => a.length === 2 && b.length === 4, 5000, 'routing');
    await sleep(100);
    assert.deepEqual(bodies(a), ['error', 'error']);
    assert.deepEqual(bodies(b), ['info', 'warning', 'error', 'error']);
  });

  test('5. topics: * and #, # matching zero words, a.#.b', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('topic_logs', 'topic', { durable: false });
    const bindings: Record<string, string[]> = {
      q1: ['*.orange.*'],
      q2: ['*.*.rabbit', 'lazy.#'],
      all: ['#'],
      ab: ['a.#.b'],
      exact: ['a.b'],
    };
    const msgs: Record<string, ConsumeMessage[]> = {};
    for (const [name, keys] of Object.entries(bindings)) {
      const { queue } = await ch.assertQueue('', { exclusive: true });
      for (const k of keys) await ch.bindQueue(queue, 'topic_logs', k);
      msgs[name] = await collect(ch, queue);
    }
    const got = (name: string): string[] => bodies(msgs[name]!);
    const keys = [
      'quick.orange.rabbit', // q1 q2
      'lazy.orange.elephant', // q1 q2
      'quick.orange.fox', // q1
      'lazy.brown.fox', // q2
      'lazy.pink.rabbit', // q2 once, though two bindings match
      'quick.brown.fox', // none but #
      'orange', // none but #
      'quick.orange.male.rabbit', // none but #
      'lazy.orange.male.rabbit', // q2
      'lazy', // q2: # matches zero words
      'a.b', // ab (zero words between) and exact
      'a.x.y.b', // ab
      'a.b.c', // none but #
      'x.a.b', // none but #
      '', // none but #
    ];
    for (const k of keys) ch.publish('topic_logs', k, Buffer.from(k));
    await waitFor(() => got('all').length === keys.length, 5000, 'topic fan-in');
    await sleep(100);
    assert.deepEqual(got('all'), keys);
    assert.deepEqual(got('q1'), ['quick.orange.rabbit', 'lazy.orange.elephant', 'quick.orange.fox']);
    assert.deepEqual(got('q2'), ['quick.orange.rabbit', 'lazy.orange.elephant', 'lazy.brown.fox', 'lazy.pink.rabbit', 'lazy.orange.male.rabbit', 'lazy']);
    assert.deepEqual(got('ab'), ['a.b', 'a.x.y.b']);
    assert.deepEqual(got('exact'), ['a.b']);
  });

  /** The tutorial's server: fib(n) on rpc_queue, reply to replyTo with the correlationId. */
  const startRpcServer = async (queue: string): Promise<void> => {
    const ch = await channel(await open());
    await ch.assertQueue(queue, { durable: false });
    await ch.prefetch(1);
    const fib = (n: number): number => (n < 2 ? n : fib(n - 1) + fib(n - 2));
    await ch.consume(queue, (m) => {
      if (m === null) return;
      const n = Number(m.content.toString());
      ch.sendToQueue(m.properties.replyTo as string, Buffer.from(String(fib(n))), { correlationId: m.properties.correlationId as string });
      ch.ack(m);
    });
  };

  test('6a. RPC with an exclusive reply queue and correlationId', async () => {
    await startRpcServer('rpc_queue');
    const ch = await channel(await open());
    const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
    const pending = new Map<string, (v: string) => void>();
    await ch.consume(replyQ, (m) => {
      if (m === null) return;
      pending.get(m.properties.correlationId as string)?.(m.content.toString());
    }, { noAck: true });
    const call = (n: number): Promise<string> =>
      new Promise((resolve) => {
        const id = randomUUID();
        pending.set(id, resolve);
        ch.sendToQueue('rpc_queue', Buffer.from(String(n)), { correlationId: id, replyTo: replyQ });
      });
    const results = await Promise.all([call(10), call(1), call(20), call(0)]);
    assert.deepEqual(results, ['55', '1', '6765', '0']);
  });

  test('6b. RPC with direct reply-to (amq.rabbitmq.reply-to)', async () => {
    await startRpcServer('rpc_queue_direct');
    const ch = await channel(await open());
    const pending = new Map<string, (v: string) => void>();
    const seenReplyTo: string[] = [];
    await ch.consume('amq.rabbitmq.reply-to', (m) => {
      if (m === null) return;
      seenReplyTo.push(m.fields.routingKey);
      pending.get(m.properties.correlationId as string)?.(m.content.toString());
    }, { noAck: true });
    const call = (n: number): Promise<string> =>
      new Promise((resolve) => {
        const id = randomUUID();
        pending.set(id, resolve);
        ch.sendToQueue('rpc_queue_direct', Buffer.from(String(n)), { correlationId: id, replyTo: 'amq.rabbitmq.reply-to' });
      });
    assert.equal(await call(7), '13');
    assert.deepEqual(await Promise.all([call(3), call(15)]), ['2', '610']);
    for (const k of seenReplyTo) assert.match(k, /^amq\.rabbitmq\.reply-to\./);
  });
});

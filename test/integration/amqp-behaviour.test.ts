/**
 * Broker semantics a RabbitMQ client relies on, checked with amqplib over TCP: requeue order and
 * the redelivered flag, unacked messages going back on channel close, basic.get, mandatory
 * returns, publisher confirms, transactions, exchange-to-exchange bindings, headers exchanges,
 * alternate exchanges, auto-delete and exclusive queues, multi-frame messages, and what survives
 * a clean restart.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { ConfirmChannel, GetMessage, Message } from 'amqplib';
import { bodies, channel, channelError, closeQuietly, collect, connect, suiteBroker, type Channel, type ChannelModel, type ConsumeMessage } from '../helpers/amqp-client.js';
import { removeDir, sleep, startTestBroker, tempDataDir, waitFor } from '../helpers/test-broker.js';
import { RawAmqp } from '../helpers/raw-amqp.js';

// amqplib has no tx API; its channel's generic rpc takes the method ids (class << 16 | method).
const TX_SELECT = (90 << 16) | 10;
const TX_SELECT_OK = (90 << 16) | 11;
const TX_COMMIT = (90 << 16) | 20;
const TX_COMMIT_OK = (90 << 16) | 21;
const TX_ROLLBACK = (90 << 16) | 30;
const TX_ROLLBACK_OK = (90 << 16) | 31;
type RpcChannel = Channel & { rpc(method: number, fields: object, expect: number): Promise<unknown> };

async function getAll(ch: Channel, queue: string): Promise<GetMessage[]> {
  const out: GetMessage[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) return out;
    out.push(m);
  }
}

describe('AMQP behaviour with amqplib', () => {
  const suite = suiteBroker();
  const open = suite.open;

  const fresh = async (): Promise<{ c: ChannelModel; ch: Channel; q: string }> => {
    const c = await open();
    const ch = await channel(c);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    return { c, ch, q: queue };
  };
  const publishN = (ch: Channel, q: string, n: number): void => {
    for (let i = 1; i <= n; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  };
  const assertAlive = async (ch: Channel): Promise<void> => {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(queue, Buffer.from('ping'));
    await waitFor(async () => (await ch.get(queue, { noAck: true })) !== false, 2000, 'round trip');
  };
  const awaitCount = (ch: Channel, q: string, n: number): Promise<void> =>
    waitFor(async () => (await ch.checkQueue(q)).messageCount === n, 3000, `${n} messages in ${q}`);

  test('frames cut at any byte by the network arrive intact (pieces of 1 to 1000 bytes, bodies over several frames)', async () => {
    const ch = await channel(await open());
    const { queue: q } = await ch.assertQueue('split-frames', { durable: false });
    const raw = await RawAmqp.connect(suite.broker.amqpPort);
    try {
      const bodies: Buffer[] = [];
      for (let i = 0; i < 12; i++) bodies.push(Buffer.alloc(i % 3 === 0 ? 4096 * 3 + i : 10 + i * 37, 97 + i));
      // Body frames of at most 4 KiB (any size up to frame_max is legal): the larger bodies span several.
      const stream = Buffer.concat(
        bodies.flatMap((b, i) => [
          RawAmqp.encode(1, { name: 'basic.publish', args: { exchange: '', routingKey: q, mandatory: false, immediate: false } }),
          RawAmqp.header(1, b.length, { headers: { i } }),
          RawAmqp.body(1, b, 4096),
        ]),
      );
      for (const piece of [1, 7, 13, 100, 1000]) {
        for (let off = 0; off < stream.length; off += piece) {
          raw.write(stream.subarray(off, off + piece));
          if (off % (piece * 8) === 0) await sleep(1); // let pieces reach the broker as separate reads
        }
        await awaitCount(ch, q, bodies.length);
        for (let i = 0; i < bodies.length; i++) {
          const m = (await ch.get(q, { noAck: true })) as GetMessage;
          assert.ok(m, `message ${i} with pieces of ${piece}`);
          assert.ok(m.content.equals(bodies[i]!), `body ${i} intact with pieces of ${piece}`);
          assert.equal(m.properties.headers?.i, i);
        }
      }
    } finally {
      raw.socket.destroy();
    }
  });

  test('routes follow every topology change made between publishes of the same key (route cache)', async () => {
    const conn = await open();
    const ch = await channel(conn);
    await ch.assertExchange('rc.x', 'direct', { durable: false });
    await ch.assertExchange('rc.t', 'topic', { durable: false });
    const qs = ['rc.a', 'rc.b', 'rc.c'];
    for (const q of qs) await ch.assertQueue(q, { durable: false });
    await ch.purgeQueue('rc.a');
    const counts = async (): Promise<number[]> => {
      const out: number[] = [];
      for (const q of qs) {
        const c = await channel(conn); // a 404 closes the channel it happens on
        out.push(await c.checkQueue(q).then((r) => r.messageCount, () => -1));
        await c.close().catch(() => undefined);
      }
      return out;
    };
    const pub = async (): Promise<number[]> => {
      ch.publish('rc.x', 'k', Buffer.from('m'));
      // A round trip on the publishing channel: the broker has routed the publish before it
      // answers, since a channel's frames are handled in order.
      await ch.checkExchange('rc.x');
      return counts();
    };
    await ch.bindQueue('rc.a', 'rc.x', 'k');
    assert.deepEqual(await pub(), [1, 0, 0]);
    await ch.bindQueue('rc.b', 'rc.x', 'k');
    assert.deepEqual(await pub(), [2, 1, 0], 'a new binding');
    await ch.unbindQueue('rc.a', 'rc.x', 'k');
    assert.deepEqual(await pub(), [2, 2, 0], 'an unbinding');
    await ch.bindExchange('rc.t', 'rc.x', 'k');
    await ch.bindQueue('rc.c', 'rc.t', '#');
    assert.deepEqual(await pub(), [2, 3, 1], 'an exchange-to-exchange binding');
    await ch.deleteQueue('rc.b');
    assert.deepEqual(await pub(), [2, -1, 2], 'a deleted queue');
    await ch.assertQueue('rc.b', { durable: false });
    await ch.bindQueue('rc.b', 'rc.t', 'k');
    assert.deepEqual(await pub(), [2, 1, 3], 'a queue of the same name declared again');
    await ch.deleteExchange('rc.t');
    assert.deepEqual(await pub(), [2, 1, 3], 'a deleted exchange');
  });

  test('no-ack consumers on an empty queue get messages without a store write; a backlog is never overtaken', async () => {
    const ch = await channel(await open());
    const { queue: q } = await ch.assertQueue('direct-noack', { durable: false });
    const store = suite.broker.broker.queue('guest', '/', q, -1, null).store;
    const got: string[] = [];
    const { consumerTag } = await ch.consume(q, (m) => m && got.push(m.content.toString()), { noAck: true });
    publishN(ch, q, 200);
    await waitFor(() => got.length === 200, 3000, '200 deliveries');
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `m${i + 1}`));
    assert.equal(store.stats().live, 0);
    assert.equal(suite.broker.broker.storage.getLog(store.name)?.nextOffset, 0, 'nothing was appended to the queue log');
    // A backlog (no consumer) is stored; a consumer then gets it first, then what follows.
    await ch.cancel(consumerTag);
    got.length = 0;
    for (let i = 1; i <= 300; i++) ch.sendToQueue(q, Buffer.from(`b${i}`));
    await awaitCount(ch, q, 300);
    await ch.consume(q, (m) => m && got.push(m.content.toString()), { noAck: true });
    for (let i = 1; i <= 300; i++) ch.sendToQueue(q, Buffer.from(`c${i}`));
    await waitFor(() => got.length === 600, 3000, '600 deliveries');
    assert.deepEqual(got, [...Array.from({ length: 300 }, (_, i) => `b${i + 1}`), ...Array.from({ length: 300 }, (_, i) => `c${i + 1}`)]);
  });

  test('reject and nack with requeue put messages back at their original position, redelivered', async () => {
    const { ch, q } = await fresh();
    publishN(ch, q, 5);
    await awaitCount(ch, q, 5);
    const m1 = (await ch.get(q)) as GetMessage;
    const m2 = (await ch.get(q)) as GetMessage;
    const m3 = (await ch.get(q)) as GetMessage;
    assert.deepEqual([m1, m2, m3].map((m) => m.content.toString()), ['m1', 'm2', 'm3']);
    assert.equal(m1.fields.redelivered, false);
    ch.nack(m2, false, true);
    ch.reject(m1, true);
    ch.ack(m3);
    const rest = await getAll(ch, q);
    assert.deepEqual(bodies(rest), ['m1', 'm2', 'm4', 'm5']);
    assert.deepEqual(rest.map((m) => m.fields.redelivered), [true, true, false, false]);
  });

  test('nack multiple with requeue, and nack without requeue drops', async () => {
    const { ch, q } = await fresh();
    publishN(ch, q, 4);
    await awaitCount(ch, q, 4);
    const got: Message[] = [];
    for (let i = 0; i < 4; i++) got.push((await ch.get(q)) as GetMessage);
    ch.nack(got[0]!, false, false); // m1 dropped
    ch.nack(got[2]!, true, true); // m2, m3 back
    const rest = await getAll(ch, q);
    assert.deepEqual(bodies(rest), ['m2', 'm3']);
    ch.ack(got[3]!);
    assert.equal((await ch.checkQueue(q)).messageCount, 0);
  });

  test('unacked messages return to the queue, in order and redelivered, when their channel closes', async () => {
    const c = await open();
    const ch = await channel(c);
    const q = (await ch.assertQueue('unacked-return', { durable: false })).queue;
    publishN(ch, q, 5);
    const consumerCh = await channel(c);
    const got = await collect(consumerCh, q, false);
    await waitFor(() => got.length === 5, 3000, 'deliveries');
    consumerCh.ack(got[1]!);
    assert.equal((await ch.checkQueue(q)).messageCount, 0);
    await consumerCh.close();
    await awaitCount(ch, q, 4);
    const rest = await getAll(ch, q);
    assert.deepEqual(bodies(rest), ['m1', 'm3', 'm4', 'm5']);
    assert.ok(rest.every((m) => m.fields.redelivered));
  });

  test('unacked messages return to the queue when their connection closes', async () => {
    const c = await open();
    const ch = await channel(c);
    const q = (await ch.assertQueue('unacked-return-conn', { durable: false })).queue;
    publishN(ch, q, 3);
    const other = await open();
    const och = await channel(other);
    const got = await collect(och, q, false);
    await waitFor(() => got.length === 3, 3000, 'deliveries');
    await other.close();
    await awaitCount(ch, q, 3);
  });

  test('basic.get returns messages with a message count, and get-empty when there are none', async () => {
    const { ch, q } = await fresh();
    assert.equal(await ch.get(q), false);
    publishN(ch, q, 3);
    await awaitCount(ch, q, 3);
    const m = (await ch.get(q, { noAck: true })) as GetMessage;
    assert.equal(m.content.toString(), 'm1');
    assert.equal(m.fields.messageCount, 2);
    assert.equal(m.fields.routingKey, q);
    await getAll(ch, q);
    assert.equal(await ch.get(q), false);
  });

  test('mandatory publish that routes nowhere comes back as basic.return (312 NO_ROUTE)', async () => {
    const { ch, q } = await fresh();
    const returned: Message[] = [];
    ch.on('return', (m: Message) => returned.push(m));
    ch.publish('amq.direct', 'nobody-home', Buffer.from('lost'), { mandatory: true, messageId: 'r1', headers: { h: 1 } });
    ch.publish('amq.direct', 'nobody-home', Buffer.from('dropped silently'));
    ch.sendToQueue(q, Buffer.from('routed'), { mandatory: true });
    await waitFor(() => returned.length === 1, 20_000, 'basic.return');
    await awaitCount(ch, q, 1);
    await sleep(50);
    assert.equal(returned.length, 1);
    const r = returned[0]!;
    assert.equal(r.content.toString(), 'lost');
    assert.equal((r.fields as unknown as { replyCode: number }).replyCode, 312);
    assert.equal(r.fields.exchange, 'amq.direct');
    assert.equal(r.fields.routingKey, 'nobody-home');
    assert.equal(r.properties.messageId, 'r1');
    assert.deepEqual(r.properties.headers, { h: 1 });
  });

  test('publisher confirms: one ack per publish, waitForConfirms, to durable and transient queues', async () => {
    const c = await open();
    const ch: ConfirmChannel = await c.createConfirmChannel();
    ch.on('error', () => undefined);
    await ch.assertQueue('confirm-durable', { durable: true });
    const { queue: transient } = await ch.assertQueue('', { exclusive: true });
    let acked = 0;
    const n = 500;
    for (let i = 0; i < n; i++) {
      const q = i % 2 === 0 ? 'confirm-durable' : transient;
      ch.sendToQueue(q, Buffer.from(`c${i}`), { persistent: i % 4 === 0 }, (err) => {
        assert.equal(err, null);
        acked++;
      });
    }
    ch.publish('amq.direct', 'unroutable', Buffer.from('x'), {}, (err) => {
      assert.equal(err, null, 'an unroutable message is confirmed too');
      acked++;
    });
    await ch.waitForConfirms();
    assert.equal(acked, n + 1);
    assert.equal((await ch.checkQueue('confirm-durable')).messageCount, n / 2);
    assert.equal((await ch.checkQueue(transient)).messageCount, n / 2);
    await ch.deleteQueue('confirm-durable');
  });

  test('tx: publishes and acks take effect on commit, vanish on rollback', async () => {
    const c = await open();
    const ch = (await channel(c)) as RpcChannel;
    const { queue: q } = await ch.assertQueue('', { exclusive: true });
    await ch.rpc(TX_SELECT, {}, TX_SELECT_OK);
    ch.sendToQueue(q, Buffer.from('t1'));
    ch.sendToQueue(q, Buffer.from('t2'));
    const observer = await channel(c);
    await sleep(50);
    assert.equal((await observer.checkQueue(q)).messageCount, 0, 'nothing before commit');
    await ch.rpc(TX_COMMIT, {}, TX_COMMIT_OK);
    assert.equal((await observer.checkQueue(q)).messageCount, 2);
    ch.sendToQueue(q, Buffer.from('t3'));
    await ch.rpc(TX_ROLLBACK, {}, TX_ROLLBACK_OK);
    await ch.rpc(TX_COMMIT, {}, TX_COMMIT_OK);
    assert.equal((await observer.checkQueue(q)).messageCount, 2, 'rolled-back publish is gone');
    // acks
    const a = (await ch.get(q)) as GetMessage;
    const b = (await ch.get(q)) as GetMessage;
    ch.ack(a);
    await ch.rpc(TX_ROLLBACK, {}, TX_ROLLBACK_OK);
    ch.ack(b);
    await ch.rpc(TX_COMMIT, {}, TX_COMMIT_OK);
    await ch.close();
    // a's ack was rolled back, so a went back to the queue when the channel closed; b is gone.
    const rest = await getAll(observer, q);
    assert.deepEqual(bodies(rest), ['t1']);
    assert.equal(rest[0]!.fields.redelivered, true);
  });

  test('exchange-to-exchange bindings route through, loops are harmless', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('e2e-src', 'topic', { durable: false });
    await ch.assertExchange('e2e-mid', 'fanout', { durable: false });
    await ch.assertExchange('e2e-dst', 'direct', { durable: false });
    await ch.bindExchange('e2e-mid', 'e2e-src', 'a.*');
    await ch.bindExchange('e2e-dst', 'e2e-mid', '');
    await ch.bindExchange('e2e-src', 'e2e-dst', 'a.x'); // a loop back to the source
    const { queue: q } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q, 'e2e-dst', 'a.x');
    const got = await collect(ch, q);
    ch.publish('e2e-src', 'a.x', Buffer.from('through'));
    ch.publish('e2e-src', 'a.y', Buffer.from('wrong key at dst'));
    ch.publish('e2e-src', 'b.x', Buffer.from('wrong key at src'));
    await waitFor(() => got.length === 1, 20_000, 'e2e');
    await sleep(50);
    assert.deepEqual(bodies(got), ['through']);
    await ch.unbindExchange('e2e-dst', 'e2e-mid', '');
    ch.publish('e2e-src', 'a.x', Buffer.from('after unbind'));
    await sleep(50);
    assert.equal(got.length, 1);
  });

  test('headers exchange: x-match all and any', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('hdrs', 'headers', { durable: false });
    const all = (await ch.assertQueue('', { exclusive: true })).queue;
    const any = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(all, 'hdrs', '', { 'x-match': 'all', format: 'pdf', type: 'report' });
    await ch.bindQueue(any, 'hdrs', '', { 'x-match': 'any', format: 'pdf', type: 'log' });
    const gAll = await collect(ch, all);
    const gAny = await collect(ch, any);
    const pub = (name: string, headers: Record<string, unknown>): void => void ch.publish('hdrs', 'ignored', Buffer.from(name), { headers });
    pub('pdf-report', { format: 'pdf', type: 'report' });
    pub('pdf-report-extra', { format: 'pdf', type: 'report', x: 1 });
    pub('pdf-only', { format: 'pdf' });
    pub('zip-log', { format: 'zip', type: 'log' });
    pub('zip-report', { format: 'zip', type: 'report' });
    pub('none', {});
    await waitFor(() => gAll.length >= 2 && gAny.length >= 4, 20_000, 'the matching messages');
    await sleep(50); // and nothing more
    assert.deepEqual(bodies(gAll), ['pdf-report', 'pdf-report-extra']);
    assert.deepEqual(bodies(gAny), ['pdf-report', 'pdf-report-extra', 'pdf-only', 'zip-log']);
  });

  test('alternate-exchange receives what the main exchange cannot route', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertExchange('ae-unrouted', 'fanout', { durable: false });
    await ch.assertExchange('ae-main', 'direct', { durable: false, alternateExchange: 'ae-unrouted' });
    const main = (await ch.assertQueue('', { exclusive: true })).queue;
    const lost = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(main, 'ae-main', 'known');
    await ch.bindQueue(lost, 'ae-unrouted', '');
    const gMain = await collect(ch, main);
    const gLost = await collect(ch, lost);
    const returned: Message[] = [];
    ch.on('return', (m: Message) => returned.push(m));
    ch.publish('ae-main', 'known', Buffer.from('k'));
    ch.publish('ae-main', 'unknown', Buffer.from('u'), { mandatory: true });
    await waitFor(() => gMain.length === 1 && gLost.length === 1, 20_000, 'ae routing');
    await sleep(50);
    assert.deepEqual(bodies(gMain), ['k']);
    assert.deepEqual(bodies(gLost), ['u']);
    assert.equal(gLost[0]!.fields.routingKey, 'unknown');
    assert.equal(returned.length, 0, 'routed via the alternate exchange, so not returned');
  });

  test('an auto-delete queue goes when its last consumer cancels', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertQueue('auto-del', { autoDelete: true });
    const t1 = (await ch.consume('auto-del', () => undefined)).consumerTag;
    const t2 = (await ch.consume('auto-del', () => undefined)).consumerTag;
    await ch.cancel(t1);
    assert.equal((await ch.checkQueue('auto-del')).consumerCount, 1);
    await ch.cancel(t2);
    const probe = await channel(c);
    const closed = channelError(probe);
    await assert.rejects(probe.checkQueue('auto-del'));
    assert.equal((await closed).code, 404);
  });

  test('an exclusive queue goes when its connection closes', async () => {
    const owner = await open();
    const och = await channel(owner);
    await och.assertQueue('excl-gone', { exclusive: true });
    och.sendToQueue('excl-gone', Buffer.from('x'));
    await owner.close();
    const c = await open();
    await waitFor(async () => {
      const ch = await channel(c);
      try {
        await ch.checkQueue('excl-gone');
        await ch.close();
        return false;
      } catch (e) {
        assert.equal((e as { code?: number }).code, 404);
        return true;
      }
    }, 3000, 'exclusive queue deletion');
  });

  test('a 5 MiB message round-trips byte-identical over many frames (consume and get)', async () => {
    const { ch, q } = await fresh();
    const big = randomBytes(5 * 1024 * 1024);
    ch.sendToQueue(q, big, { contentType: 'application/octet-stream', headers: { size: big.length } });
    ch.sendToQueue(q, big);
    await awaitCount(ch, q, 2);
    const got = (await ch.get(q, { noAck: true })) as GetMessage;
    assert.equal(got.content.length, big.length);
    assert.ok(got.content.equals(big));
    assert.equal(got.properties.contentType, 'application/octet-stream');
    const consumed = await collect(ch, q);
    await waitFor(() => consumed.length === 1, 5000, 'big delivery');
    assert.ok(consumed[0]!.content.equals(big));
  });

  test('durable queues and persistent messages survive a clean restart; transient ones do not', async () => {
    const dir = tempDataDir();
    let b = await startTestBroker(dir);
    try {
      let c = await connect(b.amqpUrl);
      let ch = await c.createConfirmChannel();
      await ch.assertExchange('restart-x', 'direct', { durable: true });
      await ch.assertQueue('restart-durable', { durable: true });
      await ch.assertQueue('restart-transient', { durable: false });
      await ch.bindQueue('restart-durable', 'restart-x', 'k');
      for (let i = 0; i < 10; i++) ch.publish('restart-x', 'k', Buffer.from(`p${i}`), { persistent: i % 2 === 0, messageId: `id${i}` });
      ch.sendToQueue('restart-transient', Buffer.from('gone'), { persistent: true });
      await ch.waitForConfirms();
      // one persistent message delivered but not acked when the broker stops: it comes back redelivered
      const first = (await ch.get('restart-durable')) as GetMessage;
      assert.equal(first.content.toString(), 'p0');
      await closeQuietly(c);
      await b.close();

      b = await startTestBroker(dir);
      c = await connect(b.amqpUrl);
      ch = await c.createConfirmChannel();
      ch.on('error', () => undefined);
      await assert.rejects(ch.checkQueue('restart-transient'));
      ch = await c.createConfirmChannel();
      ch.on('error', () => undefined);
      await ch.checkExchange('restart-x');
      const rest = await getAll(ch, 'restart-durable');
      assert.deepEqual(bodies(rest), ['p0', 'p2', 'p4', 'p6', 'p8']);
      assert.equal(rest[0]!.properties.messageId, 'id0');
      // the binding survived too
      ch.publish('restart-x', 'k', Buffer.from('after'), { persistent: true });
      await ch.waitForConfirms();
      assert.deepEqual(bodies((await getAll(ch, 'restart-durable'))), ['after']);
      // Regression: after a restart a durable queue was not bound to the default exchange, so
      // sendToQueue silently routed nowhere (and was confirmed as unroutable).
      const returned: Message[] = [];
      ch.on('return', (m: Message) => returned.push(m));
      ch.sendToQueue('restart-durable', Buffer.from('via default'), { persistent: true, mandatory: true });
      await ch.waitForConfirms();
      assert.equal(returned.length, 0, 'routed through the default exchange');
      assert.deepEqual(bodies((await getAll(ch, 'restart-durable'))), ['via default']);
      await closeQuietly(c);
    } finally {
      await b.close();
      removeDir(dir);
    }
  });

  test('acked messages stay gone after a clean restart; exclusive durable queues do not survive it', async () => {
    const dir = tempDataDir();
    let b = await startTestBroker(dir);
    try {
      let c = await connect(b.amqpUrl);
      const ch = await c.createConfirmChannel();
      await ch.assertQueue('acked-restart', { durable: true });
      await ch.assertQueue('excl-durable', { durable: true, exclusive: true });
      for (let i = 0; i < 10; i++) ch.sendToQueue('acked-restart', Buffer.from(`a${i}`), { persistent: true });
      await ch.waitForConfirms();
      for (let i = 0; i < 6; i++) {
        const m = (await ch.get('acked-restart')) as GetMessage;
        if (i % 2 === 0) ch.ack(m);
      }
      // one more round trip so the acks have been processed before the broker stops
      await ch.checkQueue('acked-restart');
      await b.close();
      await closeQuietly(c);
      b = await startTestBroker(dir);
      c = await connect(b.amqpUrl);
      const ch2 = await channel(c);
      const rest = await getAll(ch2, 'acked-restart');
      assert.deepEqual(bodies(rest), ['a1', 'a3', 'a5', 'a6', 'a7', 'a8', 'a9']);
      const probe = await channel(c);
      await assert.rejects(probe.checkQueue('excl-durable'), /404/);
      await closeQuietly(c);
    } finally {
      await b.close();
      removeDir(dir);
    }
  });

  test('deleting a queue cancels its consumers (consumer_cancel_notify)', async () => {
    const c = await open();
    const ch = await channel(c);
    await ch.assertQueue('cancel-notify');
    let cancelled = false;
    await ch.consume('cancel-notify', (m) => {
      if (m === null) cancelled = true;
    });
    const other = await channel(c);
    const r = await other.deleteQueue('cancel-notify');
    assert.equal(r.messageCount, 0);
    await waitFor(() => cancelled, 3000, 'basic.cancel from the broker');
    await assertAlive(ch);
  });

  test('basic.recover requeues unacked messages, redelivered', async () => {
    const { ch, q } = await fresh();
    publishN(ch, q, 3);
    await awaitCount(ch, q, 3);
    const a = (await ch.get(q)) as GetMessage;
    (await ch.get(q)) as GetMessage;
    assert.equal(a.content.toString(), 'm1');
    await ch.recover();
    const rest = await getAll(ch, q);
    assert.deepEqual(bodies(rest), ['m1', 'm2', 'm3']);
    assert.deepEqual(rest.map((m) => m.fields.redelivered), [true, true, false]);
  });

  test('queue.purge and exchange.delete if-unused', async () => {
    const { c, ch, q } = await fresh();
    publishN(ch, q, 4);
    await awaitCount(ch, q, 4);
    assert.equal((await ch.purgeQueue(q)).messageCount, 4);
    assert.equal((await ch.checkQueue(q)).messageCount, 0);
    await ch.assertExchange('del-if-unused-x', 'fanout', { durable: false });
    await ch.bindQueue(q, 'del-if-unused-x', '');
    const closed = channelError(ch);
    await assert.rejects(ch.deleteExchange('del-if-unused-x', { ifUnused: true }));
    assert.equal((await closed).code, 406);
    const ch2 = await channel(c);
    await ch2.deleteExchange('del-if-unused-x');
    await assert.rejects(ch2.checkExchange('del-if-unused-x'), /404/);
  });

  test('direct reply-to: a request naming amq.rabbitmq.reply-to without consuming it is refused (406)', async () => {
    const { ch, q } = await fresh();
    const closed = channelError(ch);
    ch.sendToQueue(q, Buffer.from('req'), { replyTo: 'amq.rabbitmq.reply-to' });
    assert.equal((await closed).code, 406);
  });

  test('heartbeats: an idle connection with a 1 s heartbeat stays open', async () => {
    const c = await open(`${suite.broker.amqpUrl}?heartbeat=1`);
    let closed = false;
    c.on('close', () => (closed = true));
    await sleep(3500);
    assert.equal(closed, false);
    await assertAlive(await channel(c));
  });

  test('a 1 MiB message with frame_max 4096 crosses hundreds of frames intact', async () => {
    const c = await open(`${suite.broker.amqpUrl}?frameMax=4096`);
    const ch = await channel(c);
    const { queue: q } = await ch.assertQueue('', { exclusive: true });
    const big = randomBytes(1024 * 1024);
    ch.sendToQueue(q, big, { headers: { 'x-big': 'yes' } });
    const got = await collect(ch, q);
    await waitFor(() => got.length === 1, 5000, 'big delivery');
    assert.ok(got[0]!.content.equals(big));
    assert.equal(got[0]!.properties.headers?.['x-big'], 'yes');
  });
});

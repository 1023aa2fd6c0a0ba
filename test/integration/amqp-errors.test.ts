/**
 * Every AMQP reply code the broker can send, provoked over TCP and asserted with its scope:
 * channel errors close only the channel (the connection keeps working), connection errors close
 * the connection. amqplib where a normal client can provoke it, raw frames where it cannot.
 * Also: the broker survives wrong protocol headers, garbage and clients vanishing mid-message.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { channel, channelError, closeQuietly, connect, connectionError, type Channel, type ChannelModel } from '../helpers/amqp-client.js';
import { RawAmqp } from '../helpers/raw-amqp.js';
import { removeDir, sleep, startTestBroker, waitFor } from '../helpers/test-broker.js';
import { PROTOCOL_HEADER } from '../../src/protocols/amqp091/codec/mod.js';

type CodedError = Error & { code?: number };

describe('AMQP error codes', () => {
  let broker: Awaited<ReturnType<typeof startTestBroker>>;
  const conns: ChannelModel[] = [];
  const raws: RawAmqp[] = [];
  const open = async (): Promise<ChannelModel> => {
    const c = await connect(broker.amqpUrl);
    conns.push(c);
    return c;
  };
  const raw = async (opts?: { channel?: boolean }): Promise<RawAmqp> => {
    const r = await RawAmqp.connect(broker.amqpPort, opts);
    raws.push(r);
    return r;
  };
  const rawOpen = async (): Promise<RawAmqp> => {
    const r = await RawAmqp.open(broker.amqpPort);
    raws.push(r);
    return r;
  };

  /** The connection is still usable: a new channel can declare and round-trip a message. */
  const assertConnectionAlive = async (c: ChannelModel): Promise<void> => {
    const ch = await channel(c);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(queue, Buffer.from('alive'));
    await waitFor(async () => (await ch.get(queue, { noAck: true })) !== false, 2000, 'round trip');
    await ch.close();
  };

  /** Expects `op` to fail with a channel close of `code`, and the connection to survive. */
  const expectChannelError = async (c: ChannelModel, ch: Channel, code: number, op: () => unknown): Promise<CodedError> => {
    const closed = channelError(ch);
    let connClosed = false;
    c.once('close', () => (connClosed = true));
    try {
      await op();
    } catch {
      // the rpc's rejection; the close reason comes from the channel's error event
    }
    const err = await closed;
    assert.equal(err.code, code, err.message);
    await assertConnectionAlive(c);
    assert.equal(connClosed, false, 'a channel error must not close the connection');
    return err;
  };

  /** Expects `op` to close the whole connection with `code`. */
  const expectConnectionError = async (c: ChannelModel, code: number, op: () => unknown): Promise<CodedError> => {
    const failed = connectionError(c);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    try {
      await op();
    } catch {
      // pending rpcs reject when the connection goes
    }
    const err = await failed;
    assert.equal(err.code, code, err.message);
    await closed;
    return err;
  };

  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    for (const c of conns) await closeQuietly(c);
    for (const r of raws) r.destroy();
    await broker.close();
    removeDir(broker.dataDir);
  });

  describe('404 NOT_FOUND (channel)', () => {
    test('passive declare of a missing queue', async () => {
      const c = await open();
      const ch = await channel(c);
      const err = await expectChannelError(c, ch, 404, () => ch.checkQueue('no-such-queue'));
      assert.match(err.message, /no-such-queue/);
    });
    test('a missing queue whose name makes the reply text longer than 255 bytes', async () => {
      // Regression: the text was cut to 255 characters, not bytes, and encoding the close threw
      // a RangeError out of the session, which killed the broker process.
      const c = await open();
      const ch = await channel(c);
      const err = await expectChannelError(c, ch, 404, () => ch.checkQueue('\u00e9'.repeat(120)));
      assert.ok(Buffer.byteLength(err.message) > 0);
      await assertConnectionAlive(await open());
    });
    test('passive declare of a missing exchange', async () => {
      const c = await open();
      const ch = await channel(c);
      await expectChannelError(c, ch, 404, () => ch.checkExchange('no-such-exchange'));
    });
    test('publish to a missing exchange', async () => {
      const c = await open();
      const ch = await channel(c);
      const err = await expectChannelError(c, ch, 404, () => ch.publish('no-such-exchange', 'k', Buffer.from('x')));
      assert.match(err.message, /no-such-exchange/);
    });
    test('bind a missing queue', async () => {
      const c = await open();
      const ch = await channel(c);
      await expectChannelError(c, ch, 404, () => ch.bindQueue('no-such-queue', 'amq.direct', 'k'));
    });
    test('bind to a missing exchange', async () => {
      const c = await open();
      const ch = await channel(c);
      const { queue } = await ch.assertQueue('', { exclusive: true });
      await expectChannelError(c, ch, 404, () => ch.bindQueue(queue, 'no-such-exchange', 'k'));
    });
    test('consume from a missing queue', async () => {
      const c = await open();
      const ch = await channel(c);
      await expectChannelError(c, ch, 404, () => ch.consume('no-such-queue', () => undefined));
    });
  });

  describe('406 PRECONDITION_FAILED (channel)', () => {
    test('ack of an unknown delivery tag', async () => {
      const c = await open();
      const ch = await channel(c);
      const err = await expectChannelError(c, ch, 406, () => ch.ack({ fields: { deliveryTag: 999 } } as never));
      assert.match(err.message, /unknown delivery tag 999/);
    });
    test('double ack', async () => {
      const c = await open();
      const ch = await channel(c);
      const { queue } = await ch.assertQueue('', { exclusive: true });
      ch.sendToQueue(queue, Buffer.from('m'));
      let m: Awaited<ReturnType<Channel['get']>> = false;
      await waitFor(async () => (m = await ch.get(queue, { noAck: false })) !== false, 2000, 'get');
      await expectChannelError(c, ch, 406, () => {
        ch.ack(m as never);
        ch.ack(m as never);
      });
    });
    test('inequivalent redeclare of a queue', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('ineq-q', { durable: false });
      const err = await expectChannelError(c, ch, 406, () => ch.assertQueue('ineq-q', { durable: true }));
      assert.match(err.message, /inequivalent arg 'durable'/);
    });
    test('inequivalent redeclare of a queue (arguments)', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('ineq-q-args', { arguments: { 'x-max-length': 10 } });
      await expectChannelError(c, ch, 406, () => ch.assertQueue('ineq-q-args', { arguments: { 'x-max-length': 20 } }));
    });
    test('inequivalent redeclare of an exchange', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertExchange('ineq-x', 'direct', { durable: false });
      const err = await expectChannelError(c, ch, 406, () => ch.assertExchange('ineq-x', 'fanout', { durable: false }));
      assert.match(err.message, /inequivalent arg 'type'/);
    });
    test('queue.delete if-empty on a queue with messages', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('del-if-empty');
      ch.sendToQueue('del-if-empty', Buffer.from('m'));
      await waitFor(async () => (await ch.checkQueue('del-if-empty')).messageCount === 1, 2000, 'message');
      await expectChannelError(c, ch, 406, () => ch.deleteQueue('del-if-empty', { ifEmpty: true }));
    });
    test('queue.delete if-unused on a queue with a consumer', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('del-if-unused');
      const other = await channel(c);
      await other.consume('del-if-unused', () => undefined);
      await expectChannelError(c, ch, 406, () => ch.deleteQueue('del-if-unused', { ifUnused: true }));
    });
  });

  describe('403 ACCESS_REFUSED', () => {
    test('declare a queue named amq.x (channel)', async () => {
      const c = await open();
      const ch = await channel(c);
      await expectChannelError(c, ch, 403, () => ch.assertQueue('amq.x'));
    });
    test('exclusive consumer conflict (channel)', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('excl-consumer');
      await ch.consume('excl-consumer', () => undefined, { exclusive: true });
      const ch2 = await channel(c);
      await expectChannelError(c, ch2, 403, () => ch2.consume('excl-consumer', () => undefined));
    });
    test('wrong password: connect rejects with 403 (authentication_failure_close)', async () => {
      const url = broker.amqpUrl.replace('guest:guest', 'guest:wrong');
      await assert.rejects(amqp.connect(url), (e: CodedError) => {
        assert.match(e.message, /403/);
        assert.match(e.message, /ACCESS.REFUSED/);
        return true;
      });
    });
    test('wrong password on raw socket: connection.close 403 after start-ok', async () => {
      const r = await rawOpen();
      r.startFrames();
      r.write(PROTOCOL_HEADER);
      await r.expectMethod('connection.start');
      r.send(0, { name: 'connection.start-ok', args: { clientProperties: {}, mechanism: 'PLAIN', response: '\u0000guest\u0000nope', locale: 'en_US' } });
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 403);
    });
    test('PLAIN with an authorization identity other than the user: 403, as RabbitMQ (no proxy login)', async () => {
      const r = await rawOpen();
      r.startFrames();
      r.write(PROTOCOL_HEADER);
      await r.expectMethod('connection.start');
      r.send(0, { name: 'connection.start-ok', args: { clientProperties: {}, mechanism: 'PLAIN', response: 'admin\u0000guest\u0000guest', locale: 'en_US' } });
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 403);
      assert.match(close.replyText, /authorization identity 'admin'/);
    });
    test('PLAIN with the user itself as authorization identity logs in', async () => {
      const r = await rawOpen();
      r.startFrames();
      r.write(PROTOCOL_HEADER);
      await r.expectMethod('connection.start');
      r.send(0, { name: 'connection.start-ok', args: { clientProperties: {}, mechanism: 'PLAIN', response: 'guest\u0000guest\u0000guest', locale: 'en_US' } });
      await r.expectMethod('connection.tune');
    });
  });

  test('405 RESOURCE_LOCKED: another connection\'s exclusive queue (channel)', async () => {
    const owner = await open();
    const och = await channel(owner);
    await och.assertQueue('locked-q', { exclusive: true });
    const c = await open();
    const ch = await channel(c);
    await expectChannelError(c, ch, 405, () => ch.checkQueue('locked-q'));
    const ch2 = await channel(c);
    await expectChannelError(c, ch2, 405, () => ch2.consume('locked-q', () => undefined));
    const ch3 = await channel(c);
    await expectChannelError(c, ch3, 405, () => ch3.assertQueue('locked-q', { exclusive: true }));
  });

  describe('501 FRAME_ERROR (connection)', () => {
    test('a frame with a bad end octet', async () => {
      const r = await raw();
      const f = RawAmqp.encode(1, { name: 'queue.declare', args: { queue: 'fe', durable: false, exclusive: false, autoDelete: false, passive: false, nowait: false, arguments: {} } });
      f[f.length - 1] = 0x00;
      r.write(f);
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 501);
    });
    test('a frame larger than frame_max', async () => {
      const r = await raw();
      const big = Buffer.alloc(r.frameMax + 100);
      const hdr = Buffer.alloc(7);
      hdr[0] = 3;
      hdr.writeUInt16BE(1, 1);
      hdr.writeUInt32BE(big.length, 3);
      r.write(Buffer.concat([hdr, big, Buffer.from([0xce])]));
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 501);
      assert.match(close.replyText, /frame_max/);
    });
    test('an unknown frame type', async () => {
      const r = await raw();
      r.write(Buffer.from([9, 0, 1, 0, 0, 0, 0, 0xce]));
      assert.equal((await r.expectConnectionClose()).replyCode, 501);
    });
    test('malformed method arguments: 501, as RabbitMQ does (no 502 SYNTAX_ERROR)', async () => {
      const r = await raw();
      // queue.declare cut off inside its queue name
      const f = RawAmqp.encode(1, { name: 'queue.declare', args: { queue: 'some-queue-name', durable: false, exclusive: false, autoDelete: false, passive: false, nowait: false, arguments: {} } });
      const cut = Buffer.concat([f.subarray(0, 7 + 10), Buffer.from([0xce])]);
      cut.writeUInt32BE(10, 3);
      r.write(cut);
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 501);
      assert.equal(close.classId, 50);
      assert.equal(close.methodId, 10);
    });
  });

  test('503 COMMAND_INVALID: unknown exchange type (connection)', async () => {
    const c = await open();
    const ch = await channel(c);
    const err = await expectConnectionError(c, 503, () => ch.assertExchange('weird', 'nonsense'));
    assert.match(err.message, /nonsense/);
  });

  describe('504 CHANNEL_ERROR (connection)', () => {
    test('a method on a channel that was never opened', async () => {
      const r = await raw({ channel: false });
      r.send(5, { name: 'queue.declare', args: { queue: 'x', durable: false, exclusive: false, autoDelete: false, passive: false, nowait: false, arguments: {} } });
      assert.equal((await r.expectConnectionClose()).replyCode, 504);
    });
    test('a second channel.open', async () => {
      const r = await raw();
      r.send(1, { name: 'channel.open', args: {} });
      assert.equal((await r.expectConnectionClose()).replyCode, 504);
    });
  });

  describe('505 UNEXPECTED_FRAME (connection)', () => {
    test('a content body frame without a publish', async () => {
      const r = await raw();
      r.write(RawAmqp.body(1, Buffer.from('stray body')));
      assert.equal((await r.expectConnectionClose()).replyCode, 505);
    });
    test('a content header frame without a publish', async () => {
      const r = await raw();
      r.write(RawAmqp.header(1, 5));
      assert.equal((await r.expectConnectionClose()).replyCode, 505);
    });
    test('a method where a content header is expected', async () => {
      const r = await raw();
      r.write(RawAmqp.encode(1, { name: 'basic.publish', args: { exchange: '', routingKey: 'q', mandatory: false, immediate: false } }));
      r.send(1, { name: 'basic.qos', args: { prefetchSize: 0, prefetchCount: 1, global: false } });
      assert.equal((await r.expectConnectionClose()).replyCode, 505);
    });
    test('a method where a content body is expected', async () => {
      const r = await raw();
      r.write(RawAmqp.encode(1, { name: 'basic.publish', args: { exchange: '', routingKey: 'q', mandatory: false, immediate: false } }));
      r.write(RawAmqp.header(1, 10));
      r.send(1, { name: 'basic.qos', args: { prefetchSize: 0, prefetchCount: 1, global: false } });
      assert.equal((await r.expectConnectionClose()).replyCode, 505);
    });
  });

  describe('530 NOT_ALLOWED (connection)', () => {
    /** Handshake up to tune, then tune-ok with `channelMax`. */
    const tunedTo = async (channelMax: number): Promise<RawAmqp> => {
      const r = await rawOpen();
      r.startFrames();
      r.write(PROTOCOL_HEADER);
      await r.expectMethod('connection.start');
      r.send(0, { name: 'connection.start-ok', args: { clientProperties: {}, mechanism: 'PLAIN', response: '\u0000guest\u0000guest', locale: 'en_US' } });
      await r.expectMethod('connection.tune');
      r.send(0, { name: 'connection.tune-ok', args: { channelMax, frameMax: 131072, heartbeat: 0 } });
      return r;
    };
    for (const channelMax of [0, 2048, 65535]) {
      test(`tune-ok with channel_max=${channelMax} (server maximum 2047) is refused, as RabbitMQ does`, async () => {
        const r = await tunedTo(channelMax);
        const close = await r.expectConnectionClose();
        assert.equal(close.replyCode, 530);
        assert.equal(close.replyText, `NOT_ALLOWED - negotiated channel_max = ${channelMax} is higher than the maximum allowed value (2047)`);
      });
    }
    test('a channel number above the negotiated channel_max', async () => {
      const r = await tunedTo(10);
      r.send(0, { name: 'connection.open', args: { virtualHost: '/' } });
      await r.expectMethod('connection.open-ok');
      r.send(10, { name: 'channel.open', args: {} });
      await r.expectMethod('channel.open-ok');
      r.send(11, { name: 'channel.open', args: {} });
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 530);
      assert.match(close.replyText, /channel 11 exceeds the negotiated channel_max \(10\)/);
    });
    test('connect to a vhost that does not exist', async () => {
      // amqplib reports a close during the handshake as "Expected ConnectionOpenOk; got
      // <ConnectionClose ...>" without the code, so the code is checked on a raw socket too.
      await assert.rejects(amqp.connect(`${broker.amqpUrl}/nope`), /ConnectionClose/);
      const r = await rawOpen();
      r.startFrames();
      r.write(PROTOCOL_HEADER);
      await r.expectMethod('connection.start');
      r.send(0, { name: 'connection.start-ok', args: { clientProperties: {}, mechanism: 'PLAIN', response: '\u0000guest\u0000guest', locale: 'en_US' } });
      await r.expectMethod('connection.tune');
      r.send(0, { name: 'connection.tune-ok', args: { channelMax: 2047, frameMax: 131072, heartbeat: 0 } });
      r.send(0, { name: 'connection.open', args: { virtualHost: 'nope' } });
      const close = await r.expectConnectionClose();
      assert.equal(close.replyCode, 530);
      assert.match(close.replyText, /vhost nope not found/);
    });
    test('consumer tag reuse on a channel', async () => {
      const c = await open();
      const ch = await channel(c);
      const { queue } = await ch.assertQueue('tag-reuse');
      await ch.consume(queue, () => undefined, { consumerTag: 'same-tag' });
      await expectConnectionError(c, 530, () => ch.consume(queue, () => undefined, { consumerTag: 'same-tag' }));
    });
  });

  test('540 NOT_IMPLEMENTED: basic.publish with immediate=true (connection)', async () => {
    const r = await raw();
    r.write(RawAmqp.publish(1, '', 'q', Buffer.from('now!'), { immediate: true }));
    const close = await r.expectConnectionClose();
    assert.equal(close.replyCode, 540);
    assert.match(close.replyText, /immediate/);
  });

  describe('robustness', () => {
    test('a wrong protocol header gets the right header back and the socket closed', async () => {
      const r = await rawOpen();
      r.write(Buffer.from('AMQP\x00\x00\x0a\x00'));
      await r.waitClosed();
      assert.deepEqual(r.rawBytes, PROTOCOL_HEADER);
    });
    test('an HTTP request instead of AMQP gets the protocol header and a close', async () => {
      const r = await rawOpen();
      r.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await r.waitClosed();
      assert.deepEqual(r.rawBytes, PROTOCOL_HEADER);
    });
    test('garbage after the handshake closes that connection only', async () => {
      const c = await open();
      const r = await raw();
      r.write(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)));
      await r.waitClosed();
      await assertConnectionAlive(c);
      await assertConnectionAlive(await open());
    });
    test('a client vanishing mid-message does not hurt the broker or other connections', async () => {
      const c = await open();
      const ch = await channel(c);
      await ch.assertQueue('vanish');
      for (let i = 0; i < 5; i++) {
        const r = await raw();
        const body = Buffer.alloc(300_000, 0x61);
        const all = RawAmqp.publish(1, '', 'vanish', body);
        r.write(all.subarray(0, Math.floor(all.length / 2)));
        await sleep(20);
        r.destroy();
      }
      await sleep(50);
      assert.equal((await ch.checkQueue('vanish')).messageCount, 0, 'half a message is not a message');
      ch.sendToQueue('vanish', Buffer.from('whole'));
      await waitFor(async () => (await ch.checkQueue('vanish')).messageCount === 1, 2000, 'whole message');
      await assertConnectionAlive(await open());
    });
    test('a client that closes right after the protocol header', async () => {
      const r = await rawOpen();
      r.write(PROTOCOL_HEADER);
      await r.expectRawBytes(20);
      r.destroy();
      await assertConnectionAlive(await open());
    });
  });
});

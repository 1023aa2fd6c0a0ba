import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmqpCodecError,
  BASIC_ACK,
  BASIC_PUBLISH,
  METHOD_INFO,
  ReplyCode,
  decodeBasicAckInto,
  decodeBasicNack,
  decodeBasicNackInto,
  decodeBasicPublish,
  decodeBasicPublishInto,
  decodeBasicRejectInto,
  decodeMethod,
  decodeQueueDeclare,
  encodeBasicAck,
  encodeBasicNack,
  encodeBasicPublish,
  encodeBasicReject,
  encodeMethod,
  encodeQueueDeclare,
  methodHasContent,
  methodName,
  newBasicAck,
  newBasicNack,
  newBasicPublish,
  newBasicReject,
  type AmqpMethodArgs,
} from '../../src/protocols/amqp091/codec/mod.js';
import { Rng, argValue } from './random.js';

const ITERATIONS = 40;

function randomArgs(r: Rng, info: (typeof METHOD_INFO)[number]): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const a of info.args) args[a.name] = argValue(r, a.type);
  return args;
}

test('every generated method round-trips random arguments', () => {
  const r = new Rng(0x5eed);
  const buf = Buffer.alloc(64 * 1024);
  let checked = 0;
  for (const info of METHOD_INFO) {
    for (let i = 0; i < ITERATIONS; i++) {
      const args = randomArgs(r, info);
      const end = encodeMethod(buf, 3, { name: info.name, args } as AmqpMethodArgs);
      assert.equal(buf.readUInt16BE(3), info.classId);
      assert.equal(buf.readUInt16BE(5), info.methodId);
      const m = decodeMethod(info.classId, info.methodId, buf, 7, end);
      assert.equal(m.name, info.name);
      assert.equal(m.classId, info.classId);
      assert.equal(m.methodId, info.methodId);
      assert.deepEqual(m.args, args, info.name);
      checked++;
    }
  }
  assert.equal(checked, METHOD_INFO.length * ITERATIONS);
});

test('consecutive bits share one octet, least significant first', () => {
  const buf = Buffer.alloc(64);
  const end = encodeQueueDeclare(buf, 0, { queue: 'q', durable: true, autoDelete: true, nowait: false });
  // ids(4) ticket(2) "q"(2) bits(1) table(4)
  assert.equal(end, 13);
  assert.equal(buf[8], 0b01010);
  const d = decodeQueueDeclare(buf, 4, end);
  assert.deepEqual(d, { ticket: 0, queue: 'q', passive: false, durable: true, exclusive: false, autoDelete: true, nowait: false, arguments: {} });
});

test('spec defaults fill omitted arguments', () => {
  const buf = Buffer.alloc(64);
  const end = encodeBasicPublish(buf, 0, { routingKey: 'rk' });
  assert.deepEqual(decodeBasicPublish(buf, 4, end), { ticket: 0, exchange: '', routingKey: 'rk', mandatory: false, immediate: false });
  const e2 = encodeBasicNack(buf, 0, { deliveryTag: 5 });
  assert.deepEqual(decodeBasicNack(buf, 4, e2), { deliveryTag: 5, multiple: false, requeue: true });
});

test('fast decoders agree with the generated ones and reuse their object', () => {
  const r = new Rng(7);
  const buf = Buffer.alloc(1024);
  const pub = newBasicPublish();
  const ack = newBasicAck();
  const nack = newBasicNack();
  const rej = newBasicReject();
  for (let i = 0; i < 200; i++) {
    const p = { ticket: r.int(0, 65535), exchange: r.pick(['', 'amq.direct', r.str(20)]), routingKey: r.pick(['k', r.str(255)]), mandatory: r.bool(), immediate: r.bool() };
    let end = encodeBasicPublish(buf, 0, p);
    decodeBasicPublishInto(buf, 4, end, pub);
    assert.deepEqual(pub, p);
    assert.deepEqual(pub, decodeBasicPublish(buf, 4, end));
    const a = { deliveryTag: r.u64(), multiple: r.bool() };
    end = encodeBasicAck(buf, 0, a);
    decodeBasicAckInto(buf, 4, end, ack);
    assert.deepEqual(ack, a);
    const n = { deliveryTag: r.u64(), multiple: r.bool(), requeue: r.bool() };
    end = encodeBasicNack(buf, 0, n);
    decodeBasicNackInto(buf, 4, end, nack);
    assert.deepEqual(nack, n);
    const j = { deliveryTag: r.u64(), requeue: r.bool() };
    end = encodeBasicReject(buf, 0, j);
    decodeBasicRejectInto(buf, 4, end, rej);
    assert.deepEqual(rej, j);
  }
});

function codecError(fn: () => unknown): AmqpCodecError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AmqpCodecError, `expected AmqpCodecError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a throw');
}

test('truncated or over-long method arguments are 501 FRAME_ERROR naming the method', () => {
  const buf = Buffer.alloc(64 * 1024);
  const r = new Rng(99);
  for (const info of METHOD_INFO) {
    const args = randomArgs(r, info);
    const end = encodeMethod(buf, 0, { name: info.name, args } as AmqpMethodArgs);
    for (const cut of [end - 1, 4 + Math.floor((end - 4) / 2)]) {
      if (cut < 4 || cut >= end) continue;
      const e = codecError(() => decodeMethod(info.classId, info.methodId, buf, 4, cut));
      assert.equal(e.replyCode, ReplyCode.FRAME_ERROR, info.name);
      assert.equal(e.scope, 'connection');
      assert.equal(e.classId, info.classId);
      assert.equal(e.methodId, info.methodId);
    }
    const e = codecError(() => decodeMethod(info.classId, info.methodId, buf, 4, end + 1));
    assert.equal(e.replyCode, ReplyCode.FRAME_ERROR, `${info.name} with a trailing byte`);
  }
  const pub = newBasicPublish();
  assert.equal(codecError(() => decodeBasicPublishInto(buf, 4, 6, pub)).replyCode, 501);
  assert.equal(codecError(() => decodeBasicAckInto(buf, 4, 12, newBasicAck())).classId, BASIC_ACK.classId);
});

test('a bad table inside a method is 501 against that method', () => {
  const buf = Buffer.alloc(64);
  const end = encodeQueueDeclare(buf, 0, { queue: 'q', arguments: { a: 1 } });
  buf[end - 5] = 0x3f; // the tag of the value: '?'
  const e = codecError(() => decodeMethod(50, 10, buf, 4, end));
  assert.equal(e.replyCode, 501);
  assert.deepEqual([e.classId, e.methodId], [50, 10]);
});

test('unknown class or method ids are 540 NOT_IMPLEMENTED', () => {
  const buf = Buffer.alloc(8);
  for (const [c, m] of [[60, 41], [99, 10], [0, 0], [65535, 65535]] as const) {
    const e = codecError(() => decodeMethod(c, m, buf, 0, 0));
    assert.equal(e.replyCode, ReplyCode.NOT_IMPLEMENTED);
    assert.deepEqual([e.classId, e.methodId], [c, m]);
  }
});

test('method names and the content table', () => {
  assert.equal(methodName(60, 40), 'basic.publish');
  assert.equal(methodName(85, 10), 'confirm.select');
  assert.equal(methodName(60, 41), undefined);
  assert.equal(methodHasContent(BASIC_PUBLISH.classId, BASIC_PUBLISH.methodId), true);
  assert.equal(methodHasContent(60, 71), true);
  assert.equal(methodHasContent(60, 80), false);
});

test('encoders refuse values out of range and buffers too small', () => {
  assert.throws(() => encodeBasicPublish(Buffer.alloc(64), 0, { exchange: 'x'.repeat(256) }), RangeError);
  assert.throws(() => encodeBasicPublish(Buffer.alloc(8), 0, { exchange: 'abcdefgh' }), RangeError);
  assert.throws(() => encodeBasicAck(Buffer.alloc(64), 0, { deliveryTag: -1 }), RangeError);
});

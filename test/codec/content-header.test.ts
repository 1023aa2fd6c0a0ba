import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmqpCodecError,
  ContentHeader,
  TypedValue,
  decodeProperties,
  encodeProperties,
  parseContentHeader,
  propertiesSize,
  propertiesToBuffer,
  rawProperties,
  readDeliveryMode,
  readExpiration,
  readHeaders,
  readPriority,
  readTimestamp,
  replaceHeaders,
  typed,
  type BasicProperties,
} from '../../src/protocols/amqp091/codec/mod.js';
import { PROPERTY_NAMES } from '../../src/protocols/amqp091/codec/content-header.js';
import { Rng, canonicalTable } from './random.js';

const FULL: BasicProperties = {
  contentType: 'application/json',
  contentEncoding: 'gzip',
  headers: { 'x-delay': 5000, nested: { a: [1, 'b'] } },
  deliveryMode: 2,
  priority: 7,
  correlationId: 'corr',
  replyTo: 'amq.rabbitmq.reply-to',
  expiration: '60000',
  messageId: 'm-1',
  timestamp: 1700000000,
  type: 'order.created',
  userId: 'guest',
  appId: 'app',
  clusterId: 'c',
};

function randomProps(r: Rng): BasicProperties {
  const p: Record<string, unknown> = {};
  for (const name of PROPERTY_NAMES) {
    if (r.bool()) continue;
    if (name === 'headers') p[name] = canonicalTable(r);
    else if (name === 'deliveryMode' || name === 'priority') p[name] = r.int(0, 255);
    else if (name === 'timestamp') p[name] = r.u64();
    else p[name] = r.str(r.pick([0, 5, 255]));
  }
  return p as BasicProperties;
}

test('properties round-trip, every subset', () => {
  const r = new Rng(60);
  const buf = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 500; i++) {
    const p = i === 0 ? FULL : i === 1 ? {} : randomProps(r);
    const end = encodeProperties(buf, 0, p);
    assert.ok(end <= propertiesSize(p));
    assert.deepEqual(decodeProperties(buf, 0, end), p);
    // The skip-readers find the same fields without decoding the rest.
    const raw = buf.subarray(0, end);
    assert.equal(readDeliveryMode(raw), p.deliveryMode);
    assert.equal(readPriority(raw), p.priority);
    assert.equal(readExpiration(raw), p.expiration);
    assert.equal(readTimestamp(raw), p.timestamp);
    assert.deepEqual(readHeaders(raw), p.headers);
  }
});

test('the flags word puts content-type at bit 15 and cluster-id at bit 2', () => {
  assert.deepEqual([...propertiesToBuffer({ contentType: '' })], [0x80, 0, 0]);
  assert.deepEqual([...propertiesToBuffer({ clusterId: '' })], [0x00, 0x04, 0]);
  assert.deepEqual([...propertiesToBuffer({ deliveryMode: 2 })], [0x10, 0, 2]);
  assert.deepEqual([...propertiesToBuffer({})], [0, 0]);
});

test('parseContentHeader reads the fixed part and leaves the raw properties untouched', () => {
  const props = propertiesToBuffer(FULL);
  const payload = Buffer.concat([Buffer.from([0, 60, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]), props]);
  const framed = Buffer.concat([Buffer.from([1, 2, 3]), payload, Buffer.from([9])]);
  const h = new ContentHeader();
  parseContentHeader(framed, 3, 3 + payload.length, h);
  assert.equal(h.classId, 60);
  assert.equal(h.weight, 0);
  assert.equal(h.bodySize, 2 ** 32 + 5);
  const raw = rawProperties(framed, h);
  assert.ok(raw.equals(props));
  assert.equal(raw.buffer, framed.buffer, 'a view, not a copy');
  assert.equal(readDeliveryMode(framed, h.propsStart, h.propsEnd), 2);
});

function codecErr(fn: () => unknown): AmqpCodecError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AmqpCodecError, String(e));
    return e;
  }
  assert.fail('expected AmqpCodecError');
}

test('malformed content headers are 501', () => {
  const h = new ContentHeader();
  const good = Buffer.concat([Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), propertiesToBuffer(FULL)]);
  const cases: Buffer[] = [
    good.subarray(0, 13), // shorter than 14
    good.subarray(0, good.length - 1), // last shortstr cut
    Buffer.concat([good, Buffer.from([0])]), // trailing byte
    Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x02]), // bit 1: a 15th property
    Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x01]), // continuation word missing
    Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0x00, 0, 0, 0, 3, 1, 0x61, 0x3f]), // bad headers tag
  ];
  for (const c of cases) assert.equal(codecErr(() => parseContentHeader(c, 0, c.length, h)).replyCode, 501, c.toString('hex'));
  // An empty continuation word is legal.
  const cont = Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x01, 0x00, 0x00, 2]);
  parseContentHeader(cont, 0, cont.length, h);
  assert.equal(readDeliveryMode(cont, h.propsStart, h.propsEnd), 2);
});

test('replaceHeaders swaps only the headers and keeps every other byte', () => {
  const without: BasicProperties = { ...FULL, headers: undefined };
  const cases: BasicProperties[] = [FULL, without, {}, { contentType: 'a' }, { contentType: 'a', contentEncoding: 'b' }, { priority: 1 }];
  const xdeath = { 'x-death': [{ count: typed('l', 2), reason: 'rejected' }], 'x-first-death-queue': 'q' };
  for (const p of cases) {
    const raw = propertiesToBuffer(p);
    const out = replaceHeaders(raw, 0, raw.length, xdeath);
    assert.deepEqual(decodeProperties(out, 0, out.length, { typed: true }), { ...p, headers: xdeath });
    const back = replaceHeaders(out, 0, out.length, undefined);
    assert.ok(back.equals(propertiesToBuffer({ ...p, headers: undefined })));
    const h = readHeaders(out, 0, out.length, { typed: true })!;
    assert.ok(((h['x-death'] as Record<string, unknown>[])[0]!.count as TypedValue).type === 'l');
  }
});

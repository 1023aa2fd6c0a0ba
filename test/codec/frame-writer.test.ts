import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ContentHeader,
  Deliver,
  FrameHeader,
  NEED_MORE,
  contentFramesSize,
  decodeBasicDeliver,
  decodeBasicGetOk,
  deliverSizeBound,
  encodeBasicDeliver,
  encodeBasicGetOk,
  parseContentHeader,
  parseFrame,
  propertiesToBuffer,
  rawProperties,
  writeBodyFrames,
  writeContentMethod,
  writeDeliver,
  writeHeaderFrame,
  writeHeartbeat,
  writeMethodFrame,
} from '../../src/protocols/amqp091/codec/mod.js';
import { Rng } from './random.js';

function frames(buf: Buffer, end: number): { type: number; channel: number; start: number; end: number }[] {
  const h = new FrameHeader();
  const out = [];
  let off = 0;
  while (off < end) {
    const next = parseFrame(buf, off, end, 0, h);
    assert.notEqual(next, NEED_MORE);
    out.push({ type: h.type, channel: h.channel, start: h.payloadStart, end: h.payloadEnd });
    off = next;
  }
  return out;
}

test('writeDeliver equals the generic writers byte for byte (names as strings or as stored bytes, consumer tags changing)', () => {
  const r = new Rng(77);
  const a = Buffer.alloc(256 * 1024);
  const b = Buffer.alloc(256 * 1024);
  const d = new Deliver();
  for (let i = 0; i < 300; i++) {
    const frameMax = r.pick([0, 4096, 131072, 9]);
    d.channel = r.int(0, 65535);
    d.consumerTag = r.pick(['amq.ctag-abc', r.str(255)]);
    d.deliveryTag = r.u64();
    d.redelivered = r.bool();
    d.exchange = r.pick(['', r.str(30)]);
    d.routingKey = r.str(r.pick([5, 255]));
    // Half the time the names come as bytes, the way a stored message starts (two shortstrs).
    if (r.bool()) {
      const ex = Buffer.from(d.exchange);
      const rk = Buffer.from(d.routingKey);
      const names = Buffer.concat([Buffer.from([ex.length]), ex, Buffer.from([rk.length]), rk, r.bytes(7)]);
      d.names = names;
      d.namesEnd = names.length - 7;
    } else {
      d.names = null;
    }
    const props = propertiesToBuffer(r.bool() ? {} : { contentType: 'x', headers: { n: r.int(0, 9) }, deliveryMode: 2 });
    // Properties and body as ranges inside bigger buffers, as a stored record would hold them.
    const record = Buffer.concat([Buffer.from([1, 2]), props, r.bytes(r.pick([0, 1, 100, 5000, 20000]))]);
    d.props = record;
    d.propsStart = 2;
    d.propsEnd = 2 + props.length;
    d.body = record;
    d.bodyStart = d.propsEnd;
    d.bodyEnd = record.length;
    const bodyLen = d.bodyEnd - d.bodyStart;
    const end = writeDeliver(a, 0, d, frameMax);
    assert.ok(end > 0 && end <= deliverSizeBound(d, frameMax));
    let e2 = writeMethodFrame(b, 0, d.channel, encodeBasicDeliver, d);
    e2 = writeHeaderFrame(b, e2, d.channel, bodyLen, record, d.propsStart, d.propsEnd);
    e2 = writeBodyFrames(b, e2, d.channel, record, d.bodyStart, d.bodyEnd, frameMax);
    assert.equal(end, e2);
    assert.ok(a.subarray(0, end).equals(b.subarray(0, e2)));
    const fs = frames(a, end);
    assert.equal(fs.length, 2 + (bodyLen === 0 ? 0 : frameMax === 0 ? 1 : Math.ceil(bodyLen / (frameMax - 8))));
    assert.deepEqual(decodeBasicDeliver(a, fs[0]!.start + 4, fs[0]!.end), {
      consumerTag: d.consumerTag,
      deliveryTag: d.deliveryTag,
      redelivered: d.redelivered,
      exchange: d.exchange,
      routingKey: d.routingKey,
    });
    const h = new ContentHeader();
    parseContentHeader(a, fs[1]!.start, fs[1]!.end, h);
    assert.equal(h.bodySize, bodyLen);
    assert.ok(rawProperties(a, h).equals(props));
    const body = Buffer.concat(fs.slice(2).map((f) => a.subarray(f.start, f.end)));
    assert.ok(body.equals(record.subarray(d.bodyStart)));
    for (const f of fs.slice(2)) assert.ok(frameMax === 0 || f.end - f.start <= frameMax - 8);
  }
});

test('writeDeliver returns -1 when the slab is too small, and writes at an offset', () => {
  const d = new Deliver();
  d.consumerTag = 'c';
  d.routingKey = 'k';
  d.body = Buffer.alloc(100, 1);
  d.bodyEnd = 100;
  const need = deliverSizeBound(d, 131072);
  assert.equal(writeDeliver(Buffer.alloc(need - 1), 0, d, 131072), -1);
  const slab = Buffer.alloc(need + 10);
  const end = writeDeliver(slab, 10, d, 131072);
  assert.ok(end > 10);
  assert.equal(frames(slab.subarray(10), end - 10).length, 3);
});

test('content methods, heartbeats and sizes', () => {
  const buf = Buffer.alloc(4096);
  const props = propertiesToBuffer({ messageId: 'm' });
  const body = Buffer.alloc(300, 7);
  const end = writeContentMethod(buf, 0, 3, encodeBasicGetOk, { deliveryTag: 9, exchange: 'e', routingKey: 'r', messageCount: 4 }, props, body, 128);
  const fs = frames(buf, end);
  assert.deepEqual(fs.map((f) => f.type), [1, 2, 3, 3, 3]);
  assert.equal(decodeBasicGetOk(buf, fs[0]!.start + 4, fs[0]!.end).messageCount, 4);
  assert.equal(end - (fs[1]!.start - 7), contentFramesSize(props.length, body.length, 128));
  assert.deepEqual([...buf.subarray(0, writeHeartbeat(buf, 0))], [8, 0, 0, 0, 0, 0, 0, 0xce]);
  assert.throws(() => writeHeartbeat(Buffer.alloc(7), 0), RangeError);
  assert.throws(() => writeBodyFrames(Buffer.alloc(100), 0, 1, body, 0, body.length, 0), RangeError);
});

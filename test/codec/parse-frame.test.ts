import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmqpCodecError,
  FrameHeader,
  NEED_MORE,
  PROTOCOL_HEADER,
  checkProtocolHeader,
  encodeBasicPublish,
  encodeBasicAck,
  parseFrame,
  writeBodyFrames,
  writeHeaderFrame,
  writeHeartbeat,
  writeMethodFrame,
  propertiesToBuffer,
} from '../../src/protocols/amqp091/codec/mod.js';

interface Seen {
  type: number;
  channel: number;
  payload: string;
}

/** A realistic stream: publish + header + two body frames, an ack, a heartbeat. */
function stream(): Buffer {
  const buf = Buffer.alloc(4096);
  let off = writeMethodFrame(buf, 0, 1, encodeBasicPublish, { exchange: 'ex', routingKey: 'rk', mandatory: true });
  const props = propertiesToBuffer({ contentType: 'text/plain', headers: { a: 1, b: 'two' }, deliveryMode: 2 });
  const body = Buffer.from('x'.repeat(150));
  off = writeHeaderFrame(buf, off, 1, body.length, props);
  off = writeBodyFrames(buf, off, 1, body, 0, body.length, 108);
  off = writeMethodFrame(buf, off, 2, encodeBasicAck, { deliveryTag: 42, multiple: true });
  off = writeHeartbeat(buf, off);
  return buf.subarray(0, off);
}

function parseAll(buf: Buffer, frameMax: number): { frames: Seen[]; used: number } {
  const h = new FrameHeader();
  const frames: Seen[] = [];
  let off = 0;
  for (;;) {
    const next = parseFrame(buf, off, buf.length, frameMax, h);
    if (next === NEED_MORE) break;
    frames.push({ type: h.type, channel: h.channel, payload: buf.toString('hex', h.payloadStart, h.payloadEnd) });
    off = next;
  }
  return { frames, used: off };
}

test('a stream parses into its frames', () => {
  const s = stream();
  const { frames, used } = parseAll(s, 131072);
  assert.equal(used, s.length);
  assert.deepEqual(
    frames.map((f) => [f.type, f.channel]),
    [[1, 1], [2, 1], [3, 1], [3, 1], [1, 2], [8, 0]],
  );
});

test('cut at every offset: need-more until complete, then the same frames', () => {
  const s = stream();
  const whole = parseAll(s, 131072).frames;
  const h = new FrameHeader();
  for (let cut = 0; cut <= s.length; cut++) {
    // First chunk ends at `cut`; whatever frame straddles is carried over, as a session would.
    const first = Buffer.from(s.subarray(0, cut));
    const a = parseAll(first, 131072);
    assert.deepEqual(a.frames, whole.slice(0, a.frames.length));
    if (a.used < first.length) {
      assert.equal(parseFrame(first, a.used, first.length, 131072, h), NEED_MORE);
      assert.ok(h.need > first.length - a.used, `need ${h.need} at cut ${cut}`);
    }
    const rest = Buffer.concat([first.subarray(a.used), s.subarray(cut)]);
    const b = parseAll(rest, 131072);
    assert.equal(b.used, rest.length);
    assert.deepEqual([...a.frames, ...b.frames], whole, `cut ${cut}`);
  }
});

test('parsing at an offset within a larger buffer respects end', () => {
  const s = stream();
  const big = Buffer.concat([Buffer.from([9, 9, 9]), s, Buffer.from([1, 2, 3])]);
  const h = new FrameHeader();
  let off = 3;
  let n = 0;
  for (;;) {
    const next = parseFrame(big, off, 3 + s.length, 0, h);
    if (next === NEED_MORE) break;
    off = next;
    n++;
  }
  assert.equal(n, 6);
  assert.equal(off, 3 + s.length);
});

function frameErr(buf: Buffer, frameMax = 131072): AmqpCodecError {
  try {
    parseFrame(buf, 0, buf.length, frameMax, new FrameHeader());
  } catch (e) {
    assert.ok(e instanceof AmqpCodecError);
    return e;
  }
  assert.fail('expected AmqpCodecError');
}

test('frame errors are 501 FRAME_ERROR on the connection', () => {
  const ok = Buffer.from([1, 0, 1, 0, 0, 0, 1, 0xaa, 0xce]);
  assert.equal(parseFrame(ok, 0, ok.length, 4096, new FrameHeader()), 9);
  const badEnd = Buffer.from(ok);
  badEnd[8] = 0xcd;
  const badType = Buffer.from(ok);
  badType[0] = 4;
  const hbPayload = Buffer.from([8, 0, 0, 0, 0, 0, 1, 0, 0xce]);
  const tooBig = Buffer.from([3, 0, 1, 0, 0, 0x10, 0x01]); // 4097 bytes, header only
  for (const [b, max] of [[badEnd, 4096], [badType, 4096], [hbPayload, 4096], [tooBig, 4096]] as const) {
    const e = frameErr(b, max);
    assert.equal(e.replyCode, 501);
    assert.equal(e.scope, 'connection');
  }
  // frame_max itself is tolerated (RabbitMQ's FRAME_SIZE_FUDGE); 0 means no limit.
  const atMax = Buffer.alloc(4096 + 8);
  atMax.set([3, 0, 1, 0, 0, 0x10, 0x00]);
  atMax[4096 + 7] = 0xce;
  assert.equal(parseFrame(atMax, 0, atMax.length, 4096, new FrameHeader()), atMax.length);
  assert.equal(parseFrame(tooBig, 0, tooBig.length, 0, new FrameHeader()), NEED_MORE);
});

test('protocol header: ok, need-more, wrong with the header to send back', () => {
  assert.equal(checkProtocolHeader(PROTOCOL_HEADER).status, 'ok');
  assert.equal(checkProtocolHeader(Buffer.from('AMQP\x01\x01\x00\x09', 'latin1')).status, 'ok');
  for (let n = 0; n < 8; n++) assert.equal(checkProtocolHeader(PROTOCOL_HEADER.subarray(0, n)).status, 'need-more');
  for (const wrong of ['AMQP\x00\x00\x09\x00', 'AMQP\x00\x01\x00\x00', 'AMQP\x03\x01\x00\x00', 'GET / HTTP/1.1', 'G', '\x16\x03\x01']) {
    const r = checkProtocolHeader(Buffer.from(wrong, 'latin1'));
    assert.equal(r.status, 'wrong', JSON.stringify(wrong));
    if (r.status === 'wrong') assert.deepEqual([...r.reply], [0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
  }
  const withFrames = Buffer.concat([Buffer.from([7]), PROTOCOL_HEADER, Buffer.from([1, 2])]);
  assert.equal(checkProtocolHeader(withFrames, 1, 9).status, 'ok');
});

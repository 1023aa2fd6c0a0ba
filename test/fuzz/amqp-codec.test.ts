/**
 * Bounded fuzzing of the AMQP codec: valid frames are mutated (bytes flipped, cut, spliced,
 * lengths bumped) and random bytes are thrown at every decoder. The decoder may refuse input
 * only with its own AmqpCodecError, must consume input strictly forward, and must finish.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmqpCodecError,
  ContentHeader,
  FrameHeader,
  METHOD_INFO,
  NEED_MORE,
  checkProtocolHeader,
  decodeBasicAckInto,
  decodeBasicNackInto,
  decodeBasicPublishInto,
  decodeMethod,
  decodeProperties,
  decodeTable,
  newBasicAck,
  newBasicNack,
  newBasicPublish,
  parseContentHeader,
  parseFrame,
  propertiesToBuffer,
  readDeliveryMode,
  readExpiration,
  readHeaders,
  readPriority,
  replaceHeaders,
  validateTable,
  writeBodyFrames,
  writeHeaderFrame,
  writeHeartbeat,
  writeMethod,
  type AmqpMethodArgs,
} from '../../src/protocols/amqp091/codec/mod.js';
import { Rng, argValue, canonicalTable } from '../codec/random.js';

const BUDGET_MS = 2500;

function corpus(r: Rng): Buffer[] {
  const out: Buffer[] = [];
  const buf = Buffer.alloc(256 * 1024);
  for (const info of METHOD_INFO) {
    const args: Record<string, unknown> = {};
    for (const a of info.args) args[a.name] = argValue(r, a.type);
    const end = writeMethod(buf, 0, r.int(0, 3), { name: info.name, args } as AmqpMethodArgs);
    out.push(Buffer.from(buf.subarray(0, end)));
  }
  for (let i = 0; i < 20; i++) {
    const props = propertiesToBuffer({ contentType: 't', headers: canonicalTable(r), deliveryMode: 2, priority: 1, expiration: '5', messageId: 'm' });
    let end = writeHeaderFrame(buf, 0, 1, 10, props);
    end = writeBodyFrames(buf, end, 1, r.bytes(10), 0, 10, 4096);
    end = writeHeartbeat(buf, end);
    out.push(Buffer.from(buf.subarray(0, end)));
  }
  return out;
}

function mutate(r: Rng, src: Buffer): Buffer {
  const b = Buffer.from(src);
  switch (r.int(0, 5)) {
    case 0: // flip a few bytes
      for (let i = r.int(1, 4); i > 0 && b.length > 0; i--) b[r.int(0, b.length - 1)] = r.int(0, 255);
      return b;
    case 1: // cut
      return b.subarray(0, r.int(0, b.length));
    case 2: // splice random bytes in
      return Buffer.concat([b.subarray(0, r.int(0, b.length)), r.bytes(r.int(1, 16)), b.subarray(r.int(0, b.length))]);
    case 3: // bump a length-looking byte
      if (b.length > 8) b[r.int(7, b.length - 1)] += r.pick([1, -1, 0x80]);
      return b;
    case 4: // huge or zero length in the frame header
      if (b.length >= 7) b.writeUInt32BE(r.pick([0, 1, 0xffffffff, b.length]), 3);
      return b;
    default:
      return r.bytes(r.int(0, 64));
  }
}

const outcomes = { ok: 0, refused: 0 };

function expectCodecErrorOnly(fn: () => void, what: string, input: Buffer): void {
  try {
    fn();
    outcomes.ok++;
  } catch (e) {
    outcomes.refused++;
    if (!(e instanceof AmqpCodecError)) {
      assert.fail(`${what} threw ${String(e)} for input ${input.toString('hex')}`);
    }
    assert.ok(e.replyCode >= 500 && e.replyCode <= 541, `${what}: reply code ${e.replyCode}`);
  }
}

const fh = new FrameHeader();
const ch = new ContentHeader();
const pub = newBasicPublish();
const ack = newBasicAck();
const nack = newBasicNack();

/** What a session's read loop does with bytes: frames, then the payload decoders. */
function consume(buf: Buffer, frameMax: number): void {
  let off = 0;
  for (let guard = 0; guard <= buf.length; guard++) {
    const next = nextFrame(buf, off, buf.length, frameMax);
    if (next === NEED_MORE) return;
    assert.ok(next > off, 'parseFrame must move forward');
    const s = fh.payloadStart;
    const e = fh.payloadEnd;
    if (fh.type === 1 && e - s >= 4) {
      const c = buf.readUInt16BE(s);
      const m = buf.readUInt16BE(s + 2);
      expectCodecErrorOnly(() => decodeMethod(c, m, buf, s + 4, e), 'decodeMethod', buf);
      expectCodecErrorOnly(() => decodeBasicPublishInto(buf, s + 4, e, pub), 'decodeBasicPublishInto', buf);
      expectCodecErrorOnly(() => decodeBasicAckInto(buf, s + 4, e, ack), 'decodeBasicAckInto', buf);
      expectCodecErrorOnly(() => decodeBasicNackInto(buf, s + 4, e, nack), 'decodeBasicNackInto', buf);
    } else if (fh.type === 2) {
      expectCodecErrorOnly(() => {
        parseContentHeader(buf, s, e, ch);
        decodeProperties(buf, ch.propsStart, ch.propsEnd, { typed: true });
        readDeliveryMode(buf, ch.propsStart, ch.propsEnd);
        readPriority(buf, ch.propsStart, ch.propsEnd);
        readExpiration(buf, ch.propsStart, ch.propsEnd);
        readHeaders(buf, ch.propsStart, ch.propsEnd);
        replaceHeaders(buf, ch.propsStart, ch.propsEnd, { 'x-death': [] });
      }, 'content header', buf);
    }
    off = next;
  }
  assert.fail('frame loop did not terminate');
}

/** parseFrame, treating a frame error as the end of input (the session would close). */
function nextFrame(buf: Buffer, off: number, end: number, frameMax: number): number {
  let next = NEED_MORE;
  expectCodecErrorOnly(() => {
    next = parseFrame(buf, off, end, frameMax, fh);
  }, 'parseFrame', buf);
  return next;
}

test('mutated and random frames only ever raise AmqpCodecError, and terminate', { timeout: 5000 }, () => {
  const r = new Rng(0xf022);
  const seeds = corpus(r);
  const t0 = Date.now();
  let n = 0;
  while (Date.now() - t0 < BUDGET_MS) {
    for (let k = 0; k < 50; k++, n++) {
      let input = mutate(r, r.pick(seeds));
      if (r.int(0, 3) === 0) input = Buffer.concat([input, mutate(r, r.pick(seeds))]);
      consume(input, r.pick([0, 4096, 131072, 16]));
      // Raw decoders straight on the bytes, at an arbitrary offset.
      const at = r.int(0, input.length);
      expectCodecErrorOnly(() => decodeTable(input, at, input.length, { typed: r.bool() }), 'decodeTable', input);
      expectCodecErrorOnly(() => validateTable(input, at, input.length), 'validateTable', input);
      expectCodecErrorOnly(() => decodeProperties(input, at, input.length), 'decodeProperties', input);
      const c = r.pick(METHOD_INFO);
      expectCodecErrorOnly(() => decodeMethod(c.classId, c.methodId, input, at, input.length), c.name, input);
      checkProtocolHeader(input, 0, input.length);
    }
  }
  assert.ok(n > 1000, `only ${n} cases ran`);
  // Both paths must be exercised, or the mutations are too tame or too wild to mean anything.
  assert.ok(outcomes.ok > n && outcomes.refused > n, JSON.stringify(outcomes));
});

/**
 * Cross-checks against amqplib's own codec (its lib/defs.js is generated from the same spec
 * JSON by a different generator, and lib/codec.js is the field-table codec real clients use).
 * Encode with one, decode with the other, both ways.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  ContentHeader,
  Decimal,
  FrameHeader,
  METHOD_INFO,
  NEED_MORE,
  TypedValue,
  decodeMethod,
  decodeProperties,
  decodeTable,
  encodeTable,
  parseContentHeader,
  parseFrame,
  propertiesToBuffer,
  writeBodyFrames,
  writeHeaderFrame,
  writeMethod,
  type AmqpMethodArgs,
  type BasicProperties,
  type FieldTable,
  type FieldValue,
} from '../../src/protocols/amqp091/codec/mod.js';
import { PROPERTY_NAMES } from '../../src/protocols/amqp091/codec/content-header.js';
import { Rng, argValue } from './random.js';

const require = createRequire(import.meta.url);
// amqplib's package "exports" hides lib/, so load its files by path from the package root.
const amqplibLib = join(dirname(require.resolve('amqplib')), 'lib');
/* eslint-disable @typescript-eslint/no-explicit-any */
const defs = require(join(amqplibLib, 'defs.js')) as any;
const frame = require(join(amqplibLib, 'frame.js')) as any;
const codec = require(join(amqplibLib, 'codec.js')) as any;

/** Tables both sides decode to the same JS values (amqplib has no bigint, and wraps D and T). */
function compatValue(r: Rng, depth: number): FieldValue {
  switch (r.int(0, depth > 1 ? 6 : 8)) {
    case 0:
      return r.str(20, 500);
    case 1:
      return r.bool();
    case 2:
      return r.int(-(2 ** 31), 2 ** 31 - 1);
    case 3:
      return r.pick([-1, 0, 127, -128, 300, -40000, 2 ** 40, -(2 ** 45)]);
    case 4:
      return r.pick([0.5, -1.25, 1e-10]);
    case 5:
      return r.bytes(r.int(0, 10));
    case 6:
      return null;
    case 7: {
      const a: FieldValue[] = [];
      for (let i = r.int(0, 3); i > 0; i--) a.push(compatValue(r, depth + 1));
      return a;
    }
    default:
      return compatTable(r, depth + 1);
  }
}

function compatTable(r: Rng, depth = 0): FieldTable {
  const t: FieldTable = {};
  for (let i = r.int(0, 4); i > 0; i--) t[`k${r.str(6, 50)}`] = compatValue(r, depth);
  return t;
}

function randomArgs(r: Rng, info: (typeof METHOD_INFO)[number]): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const a of info.args) args[a.name] = a.type === 'table' ? compatTable(r) : argValue(r, a.type);
  return args;
}

/** amqplib decodes longstr to a Buffer view and leaves absent properties as undefined keys. */
function normalise(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(normalise);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = normalise(x);
    return o;
  }
  return v;
}

test('amqplib-encoded method frames decode with ours (every method)', () => {
  const r = new Rng(2024);
  const h = new FrameHeader();
  for (const info of METHOD_INFO) {
    for (let i = 0; i < 15; i++) {
      const args = randomArgs(r, info);
      const bin: Buffer = defs.encodeMethod(info.key, 7, args);
      const next = parseFrame(bin, 0, bin.length, 0, h);
      assert.equal(next, bin.length);
      assert.equal(h.type, 1);
      assert.equal(h.channel, 7);
      const classId = bin.readUInt16BE(h.payloadStart);
      const methodId = bin.readUInt16BE(h.payloadStart + 2);
      const m = decodeMethod(classId, methodId, bin, h.payloadStart + 4, h.payloadEnd);
      assert.equal(m.name, info.name);
      assert.deepEqual(normalise(m.args), normalise(args), info.name);
    }
  }
});

test('our method frames decode with amqplib (every method)', () => {
  const r = new Rng(4202);
  const buf = Buffer.alloc(64 * 1024);
  for (const info of METHOD_INFO) {
    for (let i = 0; i < 15; i++) {
      const args = randomArgs(r, info);
      const end = writeMethod(buf, 0, 5, { name: info.name, args } as AmqpMethodArgs);
      const f = frame.parseFrame(buf.subarray(0, end), 0);
      assert.ok(f);
      assert.equal(f.rest.length, 0);
      const d = frame.decodeFrame(f);
      assert.equal(d.id, info.key);
      assert.equal(d.channel, 5);
      assert.deepEqual(normalise(d.fields), normalise(args), info.name);
    }
  }
});

function randomProps(r: Rng): BasicProperties {
  const p: Record<string, unknown> = {};
  for (const name of PROPERTY_NAMES) {
    if (r.bool()) continue;
    if (name === 'headers') p[name] = compatTable(r);
    else if (name === 'deliveryMode' || name === 'priority') p[name] = r.int(0, 255);
    else if (name === 'timestamp') p[name] = r.int(0, 2 ** 40);
    else p[name] = r.str(r.pick([0, 5, 100]));
  }
  return p as BasicProperties;
}

test('content headers: amqplib → ours and ours → amqplib', () => {
  const r = new Rng(60);
  const buf = Buffer.alloc(64 * 1024);
  const h = new FrameHeader();
  const ch = new ContentHeader();
  for (let i = 0; i < 300; i++) {
    const props = randomProps(r);
    const size = r.int(0, 2 ** 40);
    const bin: Buffer = defs.encodeProperties(60, 3, size, props);
    assert.equal(parseFrame(bin, 0, bin.length, 0, h), bin.length);
    assert.equal(h.type, 2);
    parseContentHeader(bin, h.payloadStart, h.payloadEnd, ch);
    assert.equal(ch.bodySize, size);
    assert.deepEqual(normalise(decodeProperties(bin, ch.propsStart, ch.propsEnd)), normalise(props));

    const raw = propertiesToBuffer(props);
    const end = writeHeaderFrame(buf, 0, 3, size, raw);
    const d = frame.decodeFrame(frame.parseFrame(buf.subarray(0, end), 0));
    assert.equal(d.id, 60);
    assert.equal(d.size, size);
    assert.deepEqual(normalise(d.fields), normalise(props));
  }
});

test('a publish with headers from amqplib, as one stream, parsed and re-encoded identically', () => {
  const headers = {
    'x-delay': 5000,
    'x-match': 'all',
    small: 7,
    neg: -40000,
    big: 2 ** 40,
    ratio: 0.25,
    flag: true,
    none: null,
    blob: Buffer.from([1, 2, 3]),
    list: [1, 'two', [3], { four: 4 }],
    nested: { a: { b: 'c' } },
    ts: { '!': 'timestamp', value: 1700000000 },
    dec: { '!': 'decimal', value: { places: 2, digits: 12345 } },
    f32: { '!': 'float', value: 1.5 },
    u8: { '!': 'uint8', value: 200 },
    u16: { '!': 'uint16', value: 60000 },
    u32: { '!': 'uint32', value: 4000000000 },
    i64: { '!': 'int64', value: 3 },
  };
  const props = { contentType: 'application/json', deliveryMode: 2, priority: 3, expiration: '60000', headers, timestamp: 1700000000 };
  const body = Buffer.from(JSON.stringify({ hello: 'world' }).repeat(20));
  const stream = Buffer.concat([
    defs.encodeMethod(defs.BasicPublish, 1, { exchange: 'amq.topic', routingKey: 'a.b.c', mandatory: true, immediate: false }),
    defs.encodeProperties(defs.BasicPublish >>> 16, 1, body.length, props),
    frame.makeBodyFrame(1, body.subarray(0, 300)),
    frame.makeBodyFrame(1, body.subarray(300)),
  ]);
  const h = new FrameHeader();
  const seen: number[] = [];
  let off = 0;
  let propsRaw: Buffer | undefined;
  const chunks: Buffer[] = [];
  const ch = new ContentHeader();
  while (off < stream.length) {
    const next = parseFrame(stream, off, stream.length, 4096, h);
    assert.notEqual(next, NEED_MORE);
    seen.push(h.type);
    if (h.type === 1) {
      const m = decodeMethod(stream.readUInt16BE(h.payloadStart), stream.readUInt16BE(h.payloadStart + 2), stream, h.payloadStart + 4, h.payloadEnd);
      assert.deepEqual(m.args, { ticket: 0, exchange: 'amq.topic', routingKey: 'a.b.c', mandatory: true, immediate: false });
    } else if (h.type === 2) {
      parseContentHeader(stream, h.payloadStart, h.payloadEnd, ch);
      assert.equal(ch.bodySize, body.length);
      propsRaw = Buffer.from(stream.subarray(ch.propsStart, ch.propsEnd));
    } else {
      chunks.push(stream.subarray(h.payloadStart, h.payloadEnd));
    }
    off = next;
  }
  assert.deepEqual(seen, [1, 2, 3, 3]);
  assert.ok(Buffer.concat(chunks).equals(body));
  const p = decodeProperties(propsRaw!, 0, propsRaw!.length);
  assert.equal(p.expiration, '60000');
  assert.equal(p.headers!['x-delay'], 5000);
  assert.equal(p.headers!.ts, 1700000000);
  assert.deepEqual(p.headers!.dec, new Decimal(2, 12345));
  assert.equal(p.headers!.u32, 4000000000);

  // Typed decode keeps every tag amqplib chose, so our re-encode is byte-identical.
  const typedProps = decodeProperties(propsRaw!, 0, propsRaw!.length, { typed: true });
  assert.ok((typedProps.headers!.ts as TypedValue).type === 'T');
  assert.ok(propertiesToBuffer(typedProps).equals(propsRaw!));

  // And the whole message written by us decodes in amqplib.
  const out = Buffer.alloc(8192);
  let e = writeMethod(out, 0, 1, { name: 'basic.deliver', args: { consumerTag: 'ctag', deliveryTag: 1, exchange: 'amq.topic', routingKey: 'a.b.c' } });
  e = writeHeaderFrame(out, e, 1, body.length, propsRaw!);
  e = writeBodyFrames(out, e, 1, body, 0, body.length, 4096);
  let rest: Buffer = out.subarray(0, e);
  const decoded: any[] = [];
  while (rest.length > 0) {
    const f = frame.parseFrame(rest, 4096);
    decoded.push(frame.decodeFrame(f));
    rest = f.rest;
  }
  assert.equal(decoded.length, 3);
  assert.equal(decoded[0].fields.consumerTag, 'ctag');
  const hd = decoded[1].fields.headers;
  assert.deepEqual(hd.ts, { '!': 'timestamp', value: 1700000000 });
  assert.deepEqual(hd.dec, { '!': 'decimal', value: { places: 2, digits: 12345 } });
  assert.equal(hd['x-delay'], 5000);
  assert.ok(decoded[2].content.equals(body));
});

test('field tables: amqplib encodeTable → our decode → our encode matches byte for byte (typed)', () => {
  const r = new Rng(11);
  const a = Buffer.alloc(64 * 1024);
  const b = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 200; i++) {
    const t = compatTable(r);
    const n: number = codec.encodeTable(a, t, 0);
    const ours = encodeTable(b, 0, decodeTable(a, 4, n, { typed: true }));
    assert.ok(a.subarray(0, n).equals(b.subarray(0, ours)));
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmqpCodecError,
  Decimal,
  MAX_TABLE_DEPTH,
  TypedValue,
  decodeTable,
  encodeTable,
  inferTag,
  tableSize,
  typed,
  validateTable,
  type FieldTable,
} from '../../src/protocols/amqp091/codec/mod.js';
import { Rng, canonicalTable, typedValue } from './random.js';

function enc(t: FieldTable): Buffer {
  const buf = Buffer.alloc(256 * 1024);
  const end = encodeTable(buf, 0, t);
  assert.equal(end, tableSize(t), 'tableSize matches');
  return Buffer.from(buf.subarray(0, end));
}
const dec = (b: Buffer, typedMode = false): FieldTable => decodeTable(b, 4, b.length, { typed: typedMode });

test('every tag decodes to the documented JS value', () => {
  // Hand-assembled so that the expected bytes do not come from our own encoder.
  const parts: Buffer[] = [];
  const pair = (k: string, tag: string, body: number[] | Buffer): void => {
    parts.push(Buffer.from([k.length]), Buffer.from(k), Buffer.from(tag), Buffer.from(body));
  };
  pair('t', 't', [1]);
  pair('b', 'b', [0xff]);
  pair('B', 'B', [0xff]);
  pair('s', 's', [0xff, 0xfe]);
  pair('u', 'u', [0xff, 0xfe]);
  pair('I', 'I', [0xff, 0xff, 0xff, 0xfd]);
  pair('i', 'i', [0xff, 0xff, 0xff, 0xfd]);
  pair('l', 'l', [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc]);
  pair('L', 'L', [0, 0, 0, 1, 0, 0, 0, 0]);
  pair('big', 'l', [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const f = Buffer.alloc(4);
  f.writeFloatBE(1.5);
  pair('f', 'f', f);
  const d = Buffer.alloc(8);
  d.writeDoubleBE(-0.25);
  pair('d', 'd', d);
  pair('D', 'D', [2, 0, 0, 0x30, 0x39]);
  pair('T', 'T', [0, 0, 0, 0, 0x65, 0x00, 0x00, 0x00]);
  pair('S', 'S', [0, 0, 0, 3, 0x61, 0x62, 0x63]);
  pair('x', 'x', [0, 0, 0, 2, 0xde, 0xad]);
  pair('A', 'A', [0, 0, 0, 8, 0x49, 0, 0, 0, 5, 0x56, 0x74, 0]); // [I 5, V, t false]
  pair('V', 'V', []);
  pair('F', 'F', [0, 0, 0, 4, 1, 0x6b, 0x74, 0]);
  const bytes = Buffer.concat(parts);
  const t = decodeTable(bytes, 0, bytes.length);
  assert.deepEqual(t, {
    t: true,
    b: -1,
    B: 255,
    s: -2,
    u: 65534,
    I: -3,
    i: 4294967293,
    l: -4,
    L: 4294967296,
    big: 2n ** 63n - 1n,
    f: 1.5,
    d: -0.25,
    D: new Decimal(2, 12345),
    T: 0x65000000,
    S: 'abc',
    x: Buffer.from([0xde, 0xad]),
    A: [5, null, false],
    V: null,
    F: { k: false },
  });
  assert.doesNotThrow(() => validateTable(bytes, 0, bytes.length));
});

test('JS values encode with the inferred tags', () => {
  const cases: [unknown, string][] = [
    ['s', 'S'], [true, 't'], [0, 'I'], [-(2 ** 31), 'I'], [2 ** 31 - 1, 'I'], [2 ** 31, 'l'], [-(2 ** 31) - 1, 'l'],
    [1.5, 'd'], [-0, 'd'], [NaN, 'd'], [2 ** 64, 'd'], [5n, 'l'], [Buffer.from('x'), 'x'], [[1], 'A'], [{ a: 1 }, 'F'],
    [null, 'V'], [new Decimal(1, 1), 'D'], [typed('u', 3), 'u'],
  ];
  for (const [v, tag] of cases) {
    assert.equal(inferTag(v as never), tag, String(v));
    const b = enc({ k: v as never });
    assert.equal(String.fromCharCode(b[6]!), tag, String(v));
  }
});

test('canonical tables round-trip untyped, nested included', () => {
  const r = new Rng(1234);
  for (let i = 0; i < 300; i++) {
    const t = canonicalTable(r);
    assert.deepEqual(dec(enc(t)), t);
  }
});

test('typed decoding round-trips every tag byte for byte', () => {
  const r = new Rng(4321);
  for (let i = 0; i < 300; i++) {
    const t: FieldTable = {};
    for (let j = r.int(1, 8); j > 0; j--) t[`k${j}`] = typedValue(r, 0);
    const bytes = enc(t);
    const back = dec(bytes, true);
    assert.deepEqual(back, t);
    assert.ok(enc(back).equals(bytes));
  }
});

test('x-death style headers keep their wire types through a typed decode', () => {
  const xdeath: FieldTable = {
    'x-death': [
      {
        count: typed('l', 1),
        reason: 'expired',
        queue: 'q',
        time: typed('T', 1700000000),
        exchange: '',
        'routing-keys': ['q'],
        'original-expiration': '100',
      },
    ],
    'x-first-death-reason': 'expired',
  };
  const bytes = enc(xdeath);
  assert.ok(enc(dec(bytes, true)).equals(bytes));
  // Untyped, count becomes a plain number and would re-encode as 'I'.
  const plain = dec(bytes);
  assert.equal(((plain['x-death'] as FieldTable[])[0]!).count, 1);
});

test('typed values check their payloads', () => {
  assert.throws(() => enc({ a: new TypedValue('I', 'nope') }), TypeError);
  assert.throws(() => enc({ a: new TypedValue('D', 5) }), TypeError);
  assert.throws(() => enc({ a: new TypedValue('b', 300) }), RangeError);
  assert.throws(() => enc({ ['k'.repeat(256)]: 1 }), RangeError);
  assert.throws(() => encodeTable(Buffer.alloc(10), 0, { abc: 'too long for ten bytes' }), RangeError);
});

test('a __proto__ key stays an own property', () => {
  const b = Buffer.from([9, ...Buffer.from('__proto__'), 0x74, 1]);
  const t = decodeTable(b, 0, b.length);
  assert.equal(Object.getPrototypeOf(t), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(t, '__proto__')?.value, true);
});

test('undefined values are skipped', () => {
  assert.deepEqual(dec(enc({ a: undefined, b: 1 })), { b: 1 });
});

function err(b: Buffer): AmqpCodecError {
  let e1: unknown;
  let e2: unknown;
  try {
    decodeTable(b, 0, b.length);
  } catch (e) {
    e1 = e;
  }
  try {
    validateTable(b, 0, b.length);
  } catch (e) {
    e2 = e;
  }
  assert.ok(e1 instanceof AmqpCodecError, `decode: ${String(e1)}`);
  assert.ok(e2 instanceof AmqpCodecError, `validate: ${String(e2)}`);
  return e1;
}

test('malformed tables are 501 from both decode and validate', () => {
  assert.equal(err(Buffer.from([5, 0x61])).replyCode, 501); // name runs past
  assert.equal(err(Buffer.from([1, 0x61, 0x3f])).replyCode, 501); // unknown tag
  assert.equal(err(Buffer.from([1, 0x61, 0x49, 0, 0])).replyCode, 501); // short int
  assert.equal(err(Buffer.from([1, 0x61, 0x53, 0, 0, 0, 9, 0x61])).replyCode, 501); // long string past end
  assert.equal(err(Buffer.from([1, 0x61])).replyCode, 501); // no value
  // Nesting beyond the bound is refused instead of overflowing the stack.
  const depth = MAX_TABLE_DEPTH + 5;
  let inner = Buffer.alloc(0);
  for (let i = 0; i < depth; i++) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(inner.length);
    inner = Buffer.concat([Buffer.from('A'), len, inner]);
  }
  const t = Buffer.concat([Buffer.from([1, 0x61]), inner]);
  assert.equal(err(t).replyCode, 501);
});

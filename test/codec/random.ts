/** Seeded random values for the codec property tests, so a failure reproduces exactly. */
import type { ArgType } from '../../src/protocols/amqp091/codec/mod.js';
import { Decimal, TypedValue, type FieldTable, type FieldValue } from '../../src/protocols/amqp091/codec/mod.js';

export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  bool(): boolean {
    return this.next() < 0.5;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
  /** Mostly ASCII, sometimes multi-byte, always valid UTF-8 of at most maxBytes bytes. */
  str(maxChars: number, maxBytes = 255): string {
    const n = this.int(0, maxChars);
    let s = '';
    for (let i = 0; i < n; i++) {
      const r = this.next();
      s += r < 0.85 ? String.fromCharCode(this.int(0x20, 0x7e)) : r < 0.95 ? String.fromCharCode(this.int(0xa0, 0x7ff)) : '🐇';
    }
    const cps = Array.from(s);
    while (Buffer.byteLength(cps.join('')) > maxBytes) cps.pop();
    return cps.join('');
  }
  /** A non-negative integer below 2^53, biased towards small and boundary values. */
  u64(): number {
    return this.pick([0, 1, 255, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, this.int(0, 2 ** 31), Math.floor(this.next() * 2 ** 53)]);
  }
}

/** A value that decodeTable (untyped) gives back unchanged after encodeTable. */
export function canonicalValue(r: Rng, depth: number): FieldValue {
  const kinds = depth > 2 ? 8 : 10;
  switch (r.int(0, kinds)) {
    case 0:
      return r.str(20, 1000);
    case 1:
      return r.bool();
    case 2:
      return r.int(-(2 ** 31), 2 ** 31 - 1);
    case 3:
      return r.pick([2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 40 + 3]);
    case 4:
      return r.pick([0.5, -1.25, 3.141592653589793, 1e-300, Number.MAX_VALUE]);
    case 5:
      return r.bytes(r.int(0, 20));
    case 6:
      return null;
    case 7:
      return new Decimal(r.int(0, 255), r.int(0, 2 ** 32 - 1));
    case 8:
      return r.pick([2n ** 60n, -(2n ** 62n), 2n ** 63n - 1n]);
    case 9: {
      const a: FieldValue[] = [];
      for (let i = r.int(0, 4); i > 0; i--) a.push(canonicalValue(r, depth + 1));
      return a;
    }
    default:
      return canonicalTable(r, depth + 1);
  }
}

export function canonicalTable(r: Rng, depth = 0): FieldTable {
  const t: FieldTable = {};
  for (let i = r.int(0, 5); i > 0; i--) t[`k${r.str(8, 200)}`] = canonicalValue(r, depth);
  return t;
}

/** A value with an explicit tag of every kind, for the typed (exact) round trip. */
export function typedValue(r: Rng, depth: number): FieldValue {
  const tags = ['t', 'b', 'B', 's', 'u', 'I', 'i', 'l', 'L', 'f', 'd', 'D', 'T', 'S', 'x', 'V', 'A', 'F'] as const;
  const tag = r.pick(depth > 2 ? tags.slice(0, 16) : tags);
  switch (tag) {
    case 't':
      return r.bool();
    case 'b':
      return new TypedValue('b', r.int(-128, 127));
    case 'B':
      return new TypedValue('B', r.int(0, 255));
    case 's':
      return new TypedValue('s', r.int(-32768, 32767));
    case 'u':
      return new TypedValue('u', r.int(0, 65535));
    case 'I':
      return r.int(-(2 ** 31), 2 ** 31 - 1);
    case 'i':
      return new TypedValue('i', r.int(0, 2 ** 32 - 1));
    case 'l':
      return new TypedValue('l', r.int(-1000, 1000));
    case 'L':
      return new TypedValue('L', r.int(0, 2 ** 40));
    case 'f':
      return new TypedValue('f', r.pick([0, 1.5, -2.25, 1024]));
    case 'd':
      return r.pick([0.5, -7.75, new TypedValue('d', 3)]);
    case 'D':
      return new Decimal(r.int(0, 255), r.int(0, 2 ** 32 - 1));
    case 'T':
      return new TypedValue('T', r.int(0, 2 ** 40));
    case 'S':
      return r.str(10, 100);
    case 'x':
      return r.bytes(r.int(0, 8));
    case 'V':
      return null;
    case 'A': {
      const a: FieldValue[] = [];
      for (let i = r.int(0, 4); i > 0; i--) a.push(typedValue(r, depth + 1));
      return a;
    }
    case 'F': {
      const t: FieldTable = {};
      for (let i = r.int(0, 4); i > 0; i--) t[`k${r.str(6, 100)}`] = typedValue(r, depth + 1);
      return t;
    }
  }
}

/** A random value of a method argument type (what the generated encoders accept). */
export function argValue(r: Rng, type: ArgType): unknown {
  switch (type) {
    case 'bit':
      return r.bool();
    case 'octet':
      return r.int(0, 255);
    case 'short':
      return r.int(0, 65535);
    case 'long':
      return r.int(0, 2 ** 32 - 1);
    case 'longlong':
    case 'timestamp':
      return r.u64();
    case 'shortstr':
      return r.str(r.pick([0, 10, 255]));
    case 'longstr':
      return r.bytes(r.int(0, 300));
    case 'table':
      return canonicalTable(r);
  }
}

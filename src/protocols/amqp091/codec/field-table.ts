/*
 * Field tables and arrays, with RabbitMQ's type tags (rabbitmq.com/amqp-0-9-1-errata.html and
 * rabbit_binary_parser.erl; amqplib lib/codec.js uses the same set):
 *
 *   table       = len:u32 *( name:shortstr value )        len counts the pairs' bytes
 *   array       = len:u32 *value
 *   value       = tag:u8 body
 *     't' bool u8 (any non-zero is true)     'b' i8      'B' u8      's' i16     'u' u16
 *     'I' i32     'i' u32     'l' i64     'L' i64 (RabbitMQ reads it signed, like 'l')
 *     'f' f32     'd' f64     'D' decimal = scale:u8 value:u32     'T' timestamp u64 (seconds)
 *     'S' longstr = len:u32 bytes      'x' byte array = len:u32 bytes
 *     'A' array   'F' table   'V' void (no body)
 *
 * Note RabbitMQ's 's' is a signed short, not the 0-9-1 spec's shortstr, and 'x' is bytes.
 *
 * Decoding gives plain JS values: strings, numbers (64-bit ints beyond 2^53 become bigint),
 * Buffers (copied, so they outlive the socket chunk), arrays and objects; decimals become
 * Decimal. Encoding infers a tag from the JS value the way clients do (integers in int32 range
 * 'I', other integers 'l', other numbers 'd', strings 'S', booleans 't', Buffers 'x', arrays 'A',
 * objects 'F', null 'V'), and a TypedValue forces a tag.
 *
 * decodeTable(…, { typed: true }) wraps every value whose inferred tag would differ from the one
 * on the wire in a TypedValue, so encodeTable(decodeTable(x, typed)) gives back x's bytes. That
 * is what x-death and other headers the broker rewrites need. Two things cannot survive: the
 * order of integer-like keys (JS objects put them first) and duplicate keys (the last wins).
 */
import { frameError } from './amqp-codec-error.js';

export type FieldType = 't' | 'b' | 'B' | 's' | 'u' | 'I' | 'i' | 'l' | 'L' | 'f' | 'd' | 'D' | 'T' | 'S' | 'x' | 'A' | 'F' | 'V';

/** An AMQP decimal: value / 10^scale. */
export class Decimal {
  constructor(
    readonly scale: number,
    readonly value: number,
  ) {}
}

/**
 * A value with an explicit wire tag. A class rather than a `{ type, value }` literal so that a
 * nested table which happens to have keys "type" and "value" is never mistaken for one.
 */
export class TypedValue {
  constructor(
    readonly type: FieldType,
    readonly value: FieldValue,
  ) {}
}

export function typed(type: FieldType, value: FieldValue): TypedValue {
  return new TypedValue(type, value);
}

export type FieldValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | Decimal
  | TypedValue
  | FieldValue[]
  | FieldTable;

export interface FieldTable {
  [key: string]: FieldValue | undefined;
}

export interface DecodeTableOptions {
  /** Wrap values whose wire tag is not the one encodeTable would infer, for exact round trips. */
  typed?: boolean;
}

/** Deep nesting is legal but useless; a bound keeps a hostile frame from blowing the stack. */
export const MAX_TABLE_DEPTH = 64;

const TWO32 = 4294967296;
const INT64_LIMIT = 9223372036854775808; // 2^63, exact as a double

// Decoder cursor: the value decoders return the value and leave the offset here, so that no
// { value, next } pair is allocated per field. Safe because decoding never yields.
let cur = 0;
let typedMode = false;

/** Decodes the pairs in [start, end) (the bytes after the u32 length prefix). */
export function decodeTable(buf: Buffer, start: number, end: number, options?: DecodeTableOptions): FieldTable {
  typedMode = options?.typed === true;
  return readPairs(buf, start, end, 0);
}

/** Decodes the values in [start, end) (the bytes after an array's u32 length prefix). */
export function decodeArray(buf: Buffer, start: number, end: number, options?: DecodeTableOptions): FieldValue[] {
  typedMode = options?.typed === true;
  return readValues(buf, start, end, 0);
}

function readPairs(buf: Buffer, start: number, end: number, depth: number): FieldTable {
  if (depth > MAX_TABLE_DEPTH) throw frameError('field table nested too deeply');
  const out: FieldTable = {};
  let off = start;
  while (off < end) {
    const klen = buf[off];
    off += 1;
    if (off + klen > end) throw frameError('field table name runs past its table');
    const key = buf.toString('utf8', off, off + klen);
    off += klen;
    const v = readValue(buf, off, end, depth);
    off = cur;
    // A key named __proto__ must become an own property, not replace the prototype.
    if (key === '__proto__') Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
    else out[key] = v;
  }
  cur = end;
  return out;
}

function readValues(buf: Buffer, start: number, end: number, depth: number): FieldValue[] {
  if (depth > MAX_TABLE_DEPTH) throw frameError('field array nested too deeply');
  const out: FieldValue[] = [];
  let off = start;
  while (off < end) {
    out.push(readValue(buf, off, end, depth));
    off = cur;
  }
  cur = end;
  return out;
}

function need(off: number, n: number, end: number): void {
  if (off + n > end) throw frameError('field value runs past its table');
}

function readI64(buf: Buffer, off: number): number | bigint {
  const v = buf.readInt32BE(off) * TWO32 + buf.readUInt32BE(off + 4);
  return Number.isSafeInteger(v) ? v : buf.readBigInt64BE(off);
}

function readU64(buf: Buffer, off: number): number | bigint {
  const v = buf.readUInt32BE(off) * TWO32 + buf.readUInt32BE(off + 4);
  return Number.isSafeInteger(v) ? v : buf.readBigUInt64BE(off);
}

/** Reads one tagged value at `off`; leaves the offset after it in `cur`. */
function readValue(buf: Buffer, off: number, end: number, depth: number): FieldValue {
  need(off, 1, end);
  const tag = buf[off];
  off += 1;
  let v: FieldValue;
  let len = 0;
  switch (tag) {
    case 0x53: // 'S'
      need(off, 4, end);
      len = buf.readUInt32BE(off);
      off += 4;
      need(off, len, end);
      v = buf.toString('utf8', off, off + len);
      // Invalid UTF-8 turns into U+FFFD and would not re-encode to the same bytes.
      if (typedMode && (v as string).includes('\uFFFD') && Buffer.byteLength(v as string) !== len) {
        v = new TypedValue('S', Buffer.from(buf.subarray(off, off + len)));
      }
      cur = off + len;
      return v;
    case 0x49: // 'I'
      need(off, 4, end);
      cur = off + 4;
      return buf.readInt32BE(off);
    case 0x6c: // 'l'
      need(off, 8, end);
      v = readI64(buf, off);
      cur = off + 8;
      return wrapIfNeeded('l', v);
    case 0x4c: // 'L'
      need(off, 8, end);
      cur = off + 8;
      return wrapIfNeeded('L', readI64(buf, off));
    case 0x74: // 't'
      need(off, 1, end);
      cur = off + 1;
      return buf[off] !== 0;
    case 0x46: // 'F'
      need(off, 4, end);
      len = buf.readUInt32BE(off);
      off += 4;
      need(off, len, end);
      v = readPairs(buf, off, off + len, depth + 1);
      cur = off + len;
      return v;
    case 0x41: // 'A'
      need(off, 4, end);
      len = buf.readUInt32BE(off);
      off += 4;
      need(off, len, end);
      v = readValues(buf, off, off + len, depth + 1);
      cur = off + len;
      return v;
    case 0x54: // 'T'
      need(off, 8, end);
      cur = off + 8;
      return wrapIfNeeded('T', readU64(buf, off));
    case 0x62: // 'b'
      need(off, 1, end);
      cur = off + 1;
      return wrapIfNeeded('b', buf.readInt8(off));
    case 0x42: // 'B'
      need(off, 1, end);
      cur = off + 1;
      return wrapIfNeeded('B', buf[off]);
    case 0x73: // 's'
      need(off, 2, end);
      cur = off + 2;
      return wrapIfNeeded('s', buf.readInt16BE(off));
    case 0x75: // 'u'
      need(off, 2, end);
      cur = off + 2;
      return wrapIfNeeded('u', buf.readUInt16BE(off));
    case 0x69: // 'i'
      need(off, 4, end);
      cur = off + 4;
      return wrapIfNeeded('i', buf.readUInt32BE(off));
    case 0x66: // 'f'
      need(off, 4, end);
      cur = off + 4;
      return wrapIfNeeded('f', buf.readFloatBE(off));
    case 0x64: // 'd'
      need(off, 8, end);
      cur = off + 8;
      return wrapIfNeeded('d', buf.readDoubleBE(off));
    case 0x44: // 'D'
      need(off, 5, end);
      cur = off + 5;
      return new Decimal(buf[off], buf.readUInt32BE(off + 1));
    case 0x78: // 'x'
      need(off, 4, end);
      len = buf.readUInt32BE(off);
      off += 4;
      need(off, len, end);
      cur = off + len;
      return Buffer.from(buf.subarray(off, off + len));
    case 0x56: // 'V'
      cur = off;
      return null;
    default:
      throw frameError(`unknown field type tag 0x${tag.toString(16)}`);
  }
}

function wrapIfNeeded(tag: FieldType, v: number | bigint): FieldValue {
  return typedMode && inferTag(v) !== tag ? new TypedValue(tag, v) : v;
}

/** The tag encodeTable picks for an untyped JS value. */
export function inferTag(v: FieldValue): FieldType {
  switch (typeof v) {
    case 'string':
      return 'S';
    case 'boolean':
      return 't';
    case 'bigint':
      return 'l';
    case 'number':
      if (Number.isInteger(v) && !Object.is(v, -0)) {
        if (v >= -2147483648 && v <= 2147483647) return 'I';
        if (v >= -INT64_LIMIT && v < INT64_LIMIT) return 'l';
      }
      return 'd';
    default:
      if (v === null) return 'V';
      if (v instanceof TypedValue) return v.type;
      if (v instanceof Decimal) return 'D';
      if (Buffer.isBuffer(v)) return 'x';
      if (Array.isArray(v)) return 'A';
      return 'F';
  }
}

function room(buf: Buffer, off: number, n: number): void {
  if (off + n > buf.length) throw new RangeError(`field table does not fit: need ${off + n} bytes, buffer has ${buf.length}`);
}

/** Writes len:u32 and the pairs of `table` at `off`; returns the offset after them. */
export function encodeTable(buf: Buffer, off: number, table: FieldTable): number {
  room(buf, off, 4);
  const start = off;
  off += 4;
  for (const key in table) {
    const v = table[key];
    if (v === undefined) continue;
    off = writeKey(buf, off, key);
    off = encodeFieldValue(buf, off, v);
  }
  buf.writeUInt32BE(off - start - 4, start);
  return off;
}

/** Writes len:u32 and the tagged values of `arr` at `off`. */
export function encodeArray(buf: Buffer, off: number, arr: readonly FieldValue[]): number {
  room(buf, off, 4);
  const start = off;
  off += 4;
  for (const v of arr) off = encodeFieldValue(buf, off, v);
  buf.writeUInt32BE(off - start - 4, start);
  return off;
}

function writeKey(buf: Buffer, off: number, key: string): number {
  const len = Buffer.byteLength(key, 'utf8');
  if (len > 255) throw new RangeError(`field table key longer than 255 bytes: ${key.slice(0, 40)}…`);
  room(buf, off, 1 + len);
  buf[off] = len;
  buf.write(key, off + 1, len, 'utf8');
  return off + 1 + len;
}

function writeBytes(buf: Buffer, off: number, tag: number, v: Buffer | string): number {
  if (typeof v === 'string') {
    const len = Buffer.byteLength(v, 'utf8');
    room(buf, off, 5 + len);
    buf[off] = tag;
    buf.writeUInt32BE(len, off + 1);
    buf.write(v, off + 5, len, 'utf8');
    return off + 5 + len;
  }
  room(buf, off, 5 + v.length);
  buf[off] = tag;
  buf.writeUInt32BE(v.length, off + 1);
  v.copy(buf, off + 5);
  return off + 5 + v.length;
}

function num(v: FieldValue, tag: FieldType): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  throw new TypeError(`field type '${tag}' needs a number, got ${typeof v}`);
}

function big(v: FieldValue, tag: FieldType): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  throw new TypeError(`field type '${tag}' needs an integer, got ${String(v)}`);
}

/** Writes one tagged value at `off`; returns the offset after it. */
export function encodeFieldValue(buf: Buffer, off: number, value: FieldValue): number {
  let tag: FieldType;
  let v: FieldValue = value;
  if (value instanceof TypedValue) {
    tag = value.type;
    v = value.value;
  } else {
    tag = inferTag(value);
  }
  switch (tag) {
    case 'S':
      if (typeof v !== 'string' && !Buffer.isBuffer(v)) throw new TypeError("field type 'S' needs a string or Buffer");
      return writeBytes(buf, off, 0x53, v);
    case 'x':
      if (typeof v !== 'string' && !Buffer.isBuffer(v)) throw new TypeError("field type 'x' needs a Buffer or string");
      return writeBytes(buf, off, 0x78, v);
    case 't':
      room(buf, off, 2);
      buf[off] = 0x74;
      buf[off + 1] = v === true || (typeof v === 'number' && v !== 0) ? 1 : 0;
      return off + 2;
    case 'b':
      room(buf, off, 2);
      buf[off] = 0x62;
      return buf.writeInt8(num(v, tag), off + 1);
    case 'B':
      room(buf, off, 2);
      buf[off] = 0x42;
      return buf.writeUInt8(num(v, tag), off + 1);
    case 's':
      room(buf, off, 3);
      buf[off] = 0x73;
      return buf.writeInt16BE(num(v, tag), off + 1);
    case 'u':
      room(buf, off, 3);
      buf[off] = 0x75;
      return buf.writeUInt16BE(num(v, tag), off + 1);
    case 'I':
      room(buf, off, 5);
      buf[off] = 0x49;
      return buf.writeInt32BE(num(v, tag), off + 1);
    case 'i':
      room(buf, off, 5);
      buf[off] = 0x69;
      return buf.writeUInt32BE(num(v, tag), off + 1);
    case 'l':
    case 'L':
      room(buf, off, 9);
      buf[off] = tag === 'l' ? 0x6c : 0x4c;
      return buf.writeBigInt64BE(big(v, tag), off + 1);
    case 'T':
      room(buf, off, 9);
      buf[off] = 0x54;
      return buf.writeBigUInt64BE(big(v, tag), off + 1);
    case 'f':
      room(buf, off, 5);
      buf[off] = 0x66;
      return buf.writeFloatBE(num(v, tag), off + 1);
    case 'd':
      room(buf, off, 9);
      buf[off] = 0x64;
      return buf.writeDoubleBE(num(v, tag), off + 1);
    case 'D': {
      const d = v as Decimal | { scale?: unknown; value?: unknown } | null;
      if (d === null || typeof d !== 'object' || typeof d.scale !== 'number' || typeof d.value !== 'number') {
        throw new TypeError("field type 'D' needs { scale, value }");
      }
      room(buf, off, 6);
      buf[off] = 0x44;
      buf.writeUInt8(d.scale, off + 1);
      return buf.writeUInt32BE(d.value, off + 2);
    }
    case 'V':
      room(buf, off, 1);
      buf[off] = 0x56;
      return off + 1;
    case 'A':
      if (!Array.isArray(v)) throw new TypeError("field type 'A' needs an array");
      room(buf, off, 1);
      buf[off] = 0x41;
      return encodeArray(buf, off + 1, v);
    case 'F':
      if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) throw new TypeError("field type 'F' needs an object");
      room(buf, off, 1);
      buf[off] = 0x46;
      return encodeTable(buf, off + 1, v as FieldTable);
    default:
      throw new TypeError(`unknown field type '${String(tag)}'`);
  }
}

/** Bytes encodeTable would write for `table` (length prefix included); for sizing a buffer. */
export function tableSize(table: FieldTable): number {
  let n = 4;
  for (const key in table) {
    const v = table[key];
    if (v === undefined) continue;
    n += 1 + Buffer.byteLength(key, 'utf8') + valueSize(v);
  }
  return n;
}

function valueSize(value: FieldValue): number {
  const tag = value instanceof TypedValue ? value.type : inferTag(value);
  const v = value instanceof TypedValue ? value.value : value;
  switch (tag) {
    case 'S':
    case 'x':
      return 5 + (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : (v as Buffer).length);
    case 't':
    case 'b':
    case 'B':
      return 2;
    case 's':
    case 'u':
      return 3;
    case 'I':
    case 'i':
    case 'f':
      return 5;
    case 'D':
      return 6;
    case 'V':
      return 1;
    case 'A': {
      let n = 5;
      for (const x of v as FieldValue[]) n += valueSize(x);
      return n;
    }
    case 'F':
      return 1 + tableSize(v as FieldTable);
    default: // l L T d
      return 9;
  }
}

/**
 * Throws 501 unless buf[start, end) is a well-formed list of pairs, without building any
 * values: the publish path checks a message's headers this way and stores the bytes as sent.
 */
export function validateTable(buf: Buffer, start: number, end: number): void {
  skipPairs(buf, start, end, 0);
}

function skipPairs(buf: Buffer, off: number, end: number, depth: number): void {
  if (depth > MAX_TABLE_DEPTH) throw frameError('field table nested too deeply');
  while (off < end) {
    off += 1 + buf[off];
    if (off > end) throw frameError('field table name runs past its table');
    off = skipValue(buf, off, end, depth);
  }
}

function skipValues(buf: Buffer, off: number, end: number, depth: number): void {
  if (depth > MAX_TABLE_DEPTH) throw frameError('field array nested too deeply');
  while (off < end) off = skipValue(buf, off, end, depth);
}

function skipValue(buf: Buffer, off: number, end: number, depth: number): number {
  need(off, 1, end);
  const tag = buf[off];
  off += 1;
  let n: number;
  switch (tag) {
    case 0x56: // V
      return off;
    case 0x74: // t
    case 0x62: // b
    case 0x42: // B
      n = 1;
      break;
    case 0x73: // s
    case 0x75: // u
      n = 2;
      break;
    case 0x49: // I
    case 0x69: // i
    case 0x66: // f
      n = 4;
      break;
    case 0x44: // D
      n = 5;
      break;
    case 0x6c: // l
    case 0x4c: // L
    case 0x64: // d
    case 0x54: // T
      n = 8;
      break;
    case 0x53: // S
    case 0x78: // x
    case 0x46: // F
    case 0x41: // A
      need(off, 4, end);
      n = buf.readUInt32BE(off);
      off += 4;
      need(off, n, end);
      if (tag === 0x46) skipPairs(buf, off, off + n, depth + 1);
      else if (tag === 0x41) skipValues(buf, off, off + n, depth + 1);
      break;
    default:
      throw frameError(`unknown field type tag 0x${tag.toString(16)}`);
  }
  need(off, n, end);
  return off + n;
}

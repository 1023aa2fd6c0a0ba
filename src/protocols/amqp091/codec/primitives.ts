/*
 * Readers and writers for the method-argument types (AMQP 0-9-1 §4.2.5):
 *   octet u8 | short u16 | long u32 | longlong u64 | timestamp u64 (seconds)
 *   shortstr = len:u8 bytes (≤ 255) | longstr = len:u32 bytes | table = len:u32 pairs
 * All big-endian. The generated method codecs and the hand-tuned hot paths share these.
 *
 * 64-bit fields are numbers: delivery tags and message counts never reach 2^53, and a number
 * keeps the decoders monomorphic. Writers bound-check and throw RangeError rather than let a
 * typed-array store past the end be dropped silently.
 */
import { isUtf8 } from 'node:buffer';
import { AmqpCodecError, frameError } from './amqp-codec-error.js';
import { decodeTable, type FieldTable } from './field-table.js';

const TWO32 = 4294967296;

/** The default for table arguments; frozen because every encoder shares it. */
export const EMPTY_TABLE: FieldTable = Object.freeze({}) as FieldTable;

export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * TWO32 + buf.readUInt32BE(off + 4);
}

export function writeU64(buf: Buffer, off: number, v: number): number {
  if (!(v >= 0 && v < 18446744073709551616)) throw new RangeError(`u64 out of range: ${v}`);
  const hi = Math.floor(v / TWO32);
  off = buf.writeUInt32BE(hi, off);
  return buf.writeUInt32BE(v - hi * TWO32, off);
}

/**
 * Decodes a method's shortstr argument, which must be valid UTF-8: RabbitMQ closes the
 * connection with 501 "FRAME_ERROR - Malformed UTF-8 in shortstr" for queue, exchange and
 * consumer-tag names that are not (checked against RabbitMQ 3.10).
 */
export function readStr(buf: Buffer, off: number, len: number): string {
  if (len === 0) return '';
  if (!isUtf8(buf.subarray(off, off + len))) throw frameError('Malformed UTF-8 in shortstr');
  return buf.toString('utf8', off, off + len);
}

/**
 * Decodes `len` bytes at `off` as UTF-8 without checking them (invalid bytes become U+FFFD):
 * for the fields RabbitMQ does not check either, basic.publish's names and content-header
 * shortstrs.
 */
export function readStrUnchecked(buf: Buffer, off: number, len: number): string {
  return len === 0 ? '' : buf.toString('utf8', off, off + len);
}

/**
 * Writes len:u8 and the UTF-8 of `s`. Short ASCII strings (queue names, routing keys,
 * consumer tags) are copied by hand: below ~64 characters that beats a call into
 * Buffer#write, and the loop bails out to the general path on the first non-ASCII char.
 */
export function writeShortStr(buf: Buffer, off: number, s: string): number {
  const n = s.length;
  if (n <= 64 && off + 1 + n <= buf.length) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[off + 1 + i] = c;
    }
    if (i === n) {
      buf[off] = n;
      return off + 1 + n;
    }
  }
  const len = Buffer.byteLength(s, 'utf8');
  if (len > 255) throw new RangeError(`shortstr longer than 255 bytes (${len})`);
  if (off + 1 + len > buf.length) throw new RangeError(`shortstr does not fit: need ${off + 1 + len} bytes, buffer has ${buf.length}`);
  buf[off] = len;
  buf.write(s, off + 1, len, 'utf8');
  return off + 1 + len;
}

export function writeLongStr(buf: Buffer, off: number, v: Buffer | string): number {
  const len = typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
  if (off + 4 + len > buf.length) throw new RangeError(`longstr does not fit: need ${off + 4 + len} bytes, buffer has ${buf.length}`);
  buf.writeUInt32BE(len, off);
  if (typeof v === 'string') buf.write(v, off + 4, len, 'utf8');
  else v.copy(buf, off + 4);
  return off + 4 + len;
}

/** decodeTable for a method argument: a bad table is reported against the method. */
export function decodeTableIn(buf: Buffer, start: number, end: number, classId: number, methodId: number): FieldTable {
  try {
    return decodeTable(buf, start, end);
  } catch (e) {
    if (e instanceof AmqpCodecError && e.classId === 0) {
      e.classId = classId;
      e.methodId = methodId;
    }
    throw e;
  }
}

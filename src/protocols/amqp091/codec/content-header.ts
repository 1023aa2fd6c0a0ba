/*
 * Content header frame payload (AMQP 0-9-1 §4.2.6.1):
 *
 *   class-id:u16  weight:u16 (always 0)  body-size:u64  property-flags  property-list
 *
 *   property-flags = 1*flags:u16   bit 15 is the first property, bit 1 the fifteenth; bit 0 set
 *                                  means another flags word follows
 *   property-list  = the present properties, in flag order, each in its own type
 *
 * Class basic (60), the only class with content, has 14 properties, so one flags word:
 *
 *   bit  property          type        bit  property          type
 *   15   content-type      shortstr     8   expiration        shortstr
 *   14   content-encoding  shortstr     7   message-id        shortstr
 *   13   headers           table        6   timestamp         u64 (seconds)
 *   12   delivery-mode     octet        5   type              shortstr
 *   11   priority          octet        4   user-id           shortstr
 *   10   correlation-id    shortstr     3   app-id            shortstr
 *    9   reply-to          shortstr     2   cluster-id        shortstr
 *
 * The broker keeps the property bytes (flags + list) exactly as received and copies them into
 * deliveries without decoding (RabbitMQ keeps `properties_bin` the same way). Only the few
 * fields a feature needs are read, by skipping to them: readDeliveryMode, readPriority,
 * readExpiration, readHeaders. decodeProperties/encodeProperties are for everything else.
 */
import { AmqpCodecError, frameError } from './amqp-codec-error.js';
import { ReplyCode } from './generated/constants.generated.js';
import { decodeTable, encodeTable, tableSize, validateTable, type FieldTable } from './field-table.js';
import { readStrUnchecked, readU64, writeShortStr, writeU64 } from './primitives.js';

export const BASIC_CLASS_ID = 60;

export interface BasicProperties {
  contentType?: string | undefined;
  contentEncoding?: string | undefined;
  headers?: FieldTable | undefined;
  /** 1 transient, 2 persistent. */
  deliveryMode?: number | undefined;
  priority?: number | undefined;
  correlationId?: string | undefined;
  replyTo?: string | undefined;
  /** Per-message TTL in milliseconds, as a decimal string (RabbitMQ's convention). */
  expiration?: string | undefined;
  messageId?: string | undefined;
  /** Seconds since the epoch. */
  timestamp?: number | undefined;
  type?: string | undefined;
  userId?: string | undefined;
  appId?: string | undefined;
  clusterId?: string | undefined;
}

/** Property index → its key in BasicProperties; index i is flag bit 15 - i. */
export const PROPERTY_NAMES = [
  'contentType',
  'contentEncoding',
  'headers',
  'deliveryMode',
  'priority',
  'correlationId',
  'replyTo',
  'expiration',
  'messageId',
  'timestamp',
  'type',
  'userId',
  'appId',
  'clusterId',
] as const;

const P_HEADERS = 2;
const P_DELIVERY_MODE = 3;
const P_PRIORITY = 4;
const P_EXPIRATION = 7;
const P_TIMESTAMP = 9;
const PROPERTY_COUNT = 14;

/** Content header fixed part: class-id, weight, body-size. */
export const CONTENT_HEADER_FIXED_SIZE = 12;

/** Filled in place by parseContentHeader; the hot path reuses one per connection. */
export class ContentHeader {
  classId = 0;
  weight = 0;
  bodySize = 0;
  /** The raw property bytes (flags + list) are buf[propsStart, propsEnd). */
  propsStart = 0;
  propsEnd = 0;
}

/**
 * Reads a content header payload in buf[off, end) into `out` without decoding properties.
 * For class basic the property bytes are walked once so that malformed ones are refused here
 * (501 FRAME_ERROR) instead of poisoning a queue. Checking weight = 0 and the class against
 * the pending method (505 UNEXPECTED_FRAME) is the session's job, as in rabbit_command_assembler.
 * A body size beyond 2^53 comes out inexact but still larger than any max message size.
 */
export function parseContentHeader(buf: Buffer, off: number, end: number, out: ContentHeader): void {
  // rabbit_command_assembler:analyze_frame only matches 14+ bytes; anything shorter is 501.
  if (end - off < CONTENT_HEADER_FIXED_SIZE + 2) throw frameError('content header too short');
  out.classId = (buf[off] << 8) | buf[off + 1];
  out.weight = (buf[off + 2] << 8) | buf[off + 3];
  // RabbitMQ (rabbit_command_assembler) takes a header with a non-zero weight for some other
  // frame: 505 UNEXPECTED_FRAME, against the basic.publish it was meant to follow.
  if (out.weight !== 0) {
    throw new AmqpCodecError(ReplyCode.UNEXPECTED_FRAME, 'UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead', 60, 40);
  }
  out.bodySize = readU64(buf, off + 4);
  out.propsStart = off + CONTENT_HEADER_FIXED_SIZE;
  out.propsEnd = end;
  if (out.classId === BASIC_CLASS_ID) validateProperties(buf, out.propsStart, end);
}

/** The property bytes as received, as a view (no copy): store or forward them as they are. */
export function rawProperties(buf: Buffer, h: ContentHeader): Buffer {
  return buf.subarray(h.propsStart, h.propsEnd);
}

// Offsets of each property found by the last scan; -1 when absent. Module-level so that
// skipping to a field allocates nothing.
const at = new Int32Array(PROPERTY_COUNT);

/**
 * Walks the flags and the list up to property `upTo` (inclusive), filling `at`. Returns the
 * offset after the last property walked. Throws 501 on any field that runs past `end`.
 */
function scan(buf: Buffer, start: number, end: number, upTo: number): number {
  if (end - start < 2) throw frameError('property flags missing');
  const flags = (buf[start] << 8) | buf[start + 1];
  let off = start + 2;
  if ((flags & 1) !== 0) {
    // Continuation words may only be empty: class basic has no sixteenth property.
    let more = true;
    while (more) {
      if (off + 2 > end) throw frameError('property flags truncated');
      const w = (buf[off] << 8) | buf[off + 1];
      if ((w & 0xfffe) !== 0) throw frameError('unknown content property');
      more = (w & 1) !== 0;
      off += 2;
    }
  }
  if ((flags & 0b10) !== 0) throw frameError('unknown content property');
  for (let i = 0; i <= upTo; i++) {
    if ((flags & (0x8000 >>> i)) === 0) {
      at[i] = -1;
      continue;
    }
    at[i] = off;
    switch (i) {
      case P_HEADERS:
        if (off + 4 > end) throw frameError('headers table truncated');
        off += 4 + buf.readUInt32BE(off);
        break;
      case P_DELIVERY_MODE:
      case P_PRIORITY:
        off += 1;
        break;
      case P_TIMESTAMP:
        off += 8;
        break;
      default:
        if (off >= end) throw frameError('property truncated');
        off += 1 + buf[off];
    }
    if (off > end) throw frameError('property runs past the content header');
  }
  return off;
}

/** Throws 501 unless buf[start, end) is exactly a well-formed basic property list. */
export function validateProperties(buf: Buffer, start: number, end: number): void {
  if (scan(buf, start, end, PROPERTY_COUNT - 1) !== end) throw frameError('trailing bytes after content properties');
  const h = at[P_HEADERS];
  if (h >= 0) validateTable(buf, h + 4, h + 4 + buf.readUInt32BE(h));
}

/** delivery-mode (1 transient, 2 persistent) from raw property bytes, or undefined if absent. */
export function readDeliveryMode(raw: Buffer, start = 0, end = raw.length): number | undefined {
  scan(raw, start, end, P_DELIVERY_MODE);
  const p = at[P_DELIVERY_MODE];
  return p < 0 ? undefined : raw[p];
}

export function readPriority(raw: Buffer, start = 0, end = raw.length): number | undefined {
  scan(raw, start, end, P_PRIORITY);
  const p = at[P_PRIORITY];
  return p < 0 ? undefined : raw[p];
}

/** The expiration string (per-message TTL in ms) from raw property bytes, or undefined. */
export function readExpiration(raw: Buffer, start = 0, end = raw.length): string | undefined {
  scan(raw, start, end, P_EXPIRATION);
  const p = at[P_EXPIRATION];
  return p < 0 ? undefined : readStrUnchecked(raw, p + 1, raw[p]);
}

export function readTimestamp(raw: Buffer, start = 0, end = raw.length): number | undefined {
  scan(raw, start, end, P_TIMESTAMP);
  const p = at[P_TIMESTAMP];
  return p < 0 ? undefined : readU64(raw, p);
}

/** The headers table from raw property bytes, or undefined; `typed` keeps wire tags (field-table.ts). */
export function readHeaders(raw: Buffer, start = 0, end = raw.length, options?: { typed?: boolean }): FieldTable | undefined {
  scan(raw, start, end, P_HEADERS);
  const p = at[P_HEADERS];
  return p < 0 ? undefined : decodeTable(raw, p + 4, p + 4 + raw.readUInt32BE(p), options);
}

/** Decodes every present property; absent ones are left out of the result. */
export function decodeProperties(buf: Buffer, start: number, end: number, options?: { typed?: boolean }): BasicProperties {
  scan(buf, start, end, PROPERTY_COUNT - 1);
  const out: BasicProperties = {};
  for (let i = 0; i < PROPERTY_COUNT; i++) {
    const p = at[i];
    if (p < 0) continue;
    switch (i) {
      case P_HEADERS:
        out.headers = decodeTable(buf, p + 4, p + 4 + buf.readUInt32BE(p), options);
        break;
      case P_DELIVERY_MODE:
        out.deliveryMode = buf[p];
        break;
      case P_PRIORITY:
        out.priority = buf[p];
        break;
      case P_TIMESTAMP:
        out.timestamp = readU64(buf, p);
        break;
      default:
        (out as Record<string, unknown>)[PROPERTY_NAMES[i]] = readStrUnchecked(buf, p + 1, buf[p]);
    }
  }
  return out;
}

/** Writes property flags and list for `props` at `off`; returns the offset after them. */
export function encodeProperties(buf: Buffer, off: number, props: BasicProperties): number {
  const flagsAt = off;
  off = buf.writeUInt16BE(0, off);
  let flags = 0;
  for (let i = 0; i < PROPERTY_COUNT; i++) {
    const v = (props as Record<string, unknown>)[PROPERTY_NAMES[i]];
    if (v === undefined || v === null) continue;
    flags |= 0x8000 >>> i;
    switch (i) {
      case P_HEADERS:
        off = encodeTable(buf, off, v as FieldTable);
        break;
      case P_DELIVERY_MODE:
      case P_PRIORITY:
        off = buf.writeUInt8(v as number, off);
        break;
      case P_TIMESTAMP:
        off = writeU64(buf, off, v as number);
        break;
      default:
        off = writeShortStr(buf, off, v as string);
    }
  }
  buf.writeUInt16BE(flags, flagsAt);
  return off;
}

/** An upper bound on encodeProperties' output, for sizing a buffer. */
export function propertiesSize(props: BasicProperties): number {
  let n = 2;
  for (let i = 0; i < PROPERTY_COUNT; i++) {
    const v = (props as Record<string, unknown>)[PROPERTY_NAMES[i]];
    if (v === undefined || v === null) continue;
    if (i === P_HEADERS) n += tableSize(v as FieldTable);
    else if (i === P_DELIVERY_MODE || i === P_PRIORITY) n += 1;
    else if (i === P_TIMESTAMP) n += 8;
    else n += 1 + Buffer.byteLength(v as string, 'utf8');
  }
  return n;
}

/** Encodes `props` into a new Buffer of exactly the right size (not for hot paths). */
export function propertiesToBuffer(props: BasicProperties): Buffer {
  const buf = Buffer.allocUnsafe(propertiesSize(props));
  const n = encodeProperties(buf, 0, props);
  return n === buf.length ? buf : buf.subarray(0, n);
}

/**
 * New raw property bytes equal to raw[start, end) except for the headers, which become
 * `headers` (or are removed when undefined). Every other field is copied byte for byte, so
 * dead-lettering can add x-death without re-encoding what the publisher sent; pass headers
 * decoded with { typed: true } to keep their wire tags too.
 */
export function replaceHeaders(raw: Buffer, start: number, end: number, headers: FieldTable | undefined): Buffer {
  scan(raw, start, end, PROPERTY_COUNT - 1);
  const h = at[P_HEADERS];
  // The headers sit after the flags and the first two properties; find where they start/end.
  let cut: number;
  if (h >= 0) cut = h;
  else if (at[1] >= 0) cut = at[1] + 1 + raw[at[1]];
  else if (at[0] >= 0) cut = at[0] + 1 + raw[at[0]];
  else cut = flagsEnd(raw, start);
  const tail = h >= 0 ? h + 4 + raw.readUInt32BE(h) : cut;
  const newSize = headers === undefined ? 0 : tableSize(headers);
  const out = Buffer.allocUnsafe(cut - start + newSize + (end - tail));
  raw.copy(out, 0, start, cut);
  let off = cut - start;
  if (headers !== undefined) off = encodeTable(out, off, headers);
  raw.copy(out, off, tail, end);
  const flags = (out[0] << 8) | out[1];
  const nf = headers === undefined ? flags & ~0x2000 : flags | 0x2000;
  out[0] = nf >>> 8;
  out[1] = nf & 0xff;
  return out;
}

function flagsEnd(raw: Buffer, start: number): number {
  let off = start + 2;
  if ((raw[start + 1] & 1) !== 0) {
    while ((raw[off + 1] & 1) !== 0) off += 2;
    off += 2;
  }
  return off;
}

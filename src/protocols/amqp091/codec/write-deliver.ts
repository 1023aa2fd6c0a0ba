/*
 * The delivery hot path: basic.deliver (60/60) + content header + body frames, written into a
 * slab in one pass with direct byte stores.
 *
 *   method frame  01 ch:u16 size:u32 | 00 3C 00 3C consumer-tag:shortstr delivery-tag:u64
 *                                      redelivered:u8 exchange:shortstr routing-key:shortstr | CE
 *   header frame  02 ch:u16 size:u32 | 00 3C 00 00 body-size:u64 raw-properties | CE
 *   body frames   03 ch:u16 size:u32 | ≤ frame_max - 8 bytes of body | CE      (none if empty)
 *
 * The properties are the bytes the publisher sent (content-header.ts), copied, never decoded.
 * Measured target ≈ 300 ns per small message; three Buffer.allocs per delivery cost ≈ 3 µs
 * (research/DESIGN-RESEARCH.md §3).
 */
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD } from './generated/constants.generated.js';
import { FRAME_HEADER_SIZE, FRAME_OVERHEAD } from './parse-frame.js';
import { writeShortStr } from './primitives.js';
import { maxBodyChunk } from './frame-writer.js';

const TWO32 = 4294967296;
const EMPTY = Buffer.alloc(0);
/** Property bytes for "no properties": one flags word of zero. */
export const NO_PROPERTIES: Buffer = Buffer.from([0, 0]);

/**
 * One delivery, described in place: the session keeps one per connection and overwrites the
 * fields per message, so nothing is allocated. props and body are ranges, so a stored record
 * can be referenced without a subarray.
 */
export class Deliver {
  channel = 0;
  consumerTag = '';
  deliveryTag = 0;
  redelivered = false;
  exchange = '';
  routingKey = '';
  /**
   * Or, instead of exchange and routingKey: bytes [0, namesEnd) of `names` already hold them as
   * two shortstrs, as a stored message starts (broker/message.ts); copied, not re-encoded.
   */
  names: Buffer | null = null;
  namesEnd = 0;
  /** consumerTag as a shortstr, kept while the tag stays the same (one consumer per channel is the rule). */
  #tagFor = '';
  #tagBytes: Buffer = Buffer.from([0]);
  props: Buffer = NO_PROPERTIES;
  propsStart = 0;
  propsEnd = 2;
  body: Buffer = EMPTY;
  bodyStart = 0;
  bodyEnd = 0;

  tagBytes(): Buffer {
    if (this.consumerTag !== this.#tagFor) {
      const b = Buffer.allocUnsafe(1 + Buffer.byteLength(this.consumerTag));
      writeShortStr(b, 0, this.consumerTag);
      this.#tagBytes = b;
      this.#tagFor = this.consumerTag;
    }
    return this.#tagBytes;
  }
}

/**
 * An upper bound on what writeDeliver writes (strings counted at 3 bytes per UTF-16 unit, so
 * no UTF-8 length is computed).
 */
export function deliverSizeBound(d: Deliver, frameMax: number): number {
  const bodyLen = d.bodyEnd - d.bodyStart;
  const bodyFrames = bodyLen === 0 ? 0 : Math.ceil(bodyLen / maxBodyChunk(frameMax));
  return (
    FRAME_OVERHEAD * (2 + bodyFrames) +
    4 + 1 + 3 * d.consumerTag.length + (d.names !== null ? d.namesEnd : 2 + 3 * (d.exchange.length + d.routingKey.length)) + 8 + 1 + // method
    12 + (d.propsEnd - d.propsStart) + // header
    bodyLen
  );
}

// Buffer#copy of a sub-range allocates a Uint8Array view per call (node:buffer _copyActual), so
// a whole buffer goes through TypedArray#set, which does not, and a short range is copied by
// hand; only a long range pays for the view, which its memcpy then dwarfs.
const SMALL_COPY = 128;

function copyRange(src: Buffer, start: number, end: number, dst: Buffer, at: number): number {
  const n = end - start;
  if (start === 0 && end === src.length) {
    dst.set(src, at);
    return at + n;
  }
  if (n <= SMALL_COPY) {
    for (let i = 0; i < n; i++) dst[at + i] = src[start + i];
    return at + n;
  }
  return at + src.copy(dst, at, start, end);
}

/**
 * Writes the delivery's frames at `off` and returns the offset after them, or -1 (having
 * written nothing that matters) when the slab lacks deliverSizeBound bytes: flush and retry,
 * or use a buffer of at least that size for an outsized message.
 */
export function writeDeliver(buf: Buffer, off: number, d: Deliver, frameMax: number): number {
  if (off + deliverSizeBound(d, frameMax) > buf.length) return -1;
  const chHi = d.channel >>> 8;
  const chLo = d.channel & 0xff;

  // basic.deliver
  const m = off;
  buf[m] = FRAME_METHOD;
  buf[m + 1] = chHi;
  buf[m + 2] = chLo;
  let p = m + FRAME_HEADER_SIZE;
  buf[p] = 0;
  buf[p + 1] = 60;
  buf[p + 2] = 0;
  buf[p + 3] = 60;
  const tag0 = d.tagBytes();
  p = copyRange(tag0, 0, tag0.length, buf, p + 4);
  const tag = d.deliveryTag;
  const hi = tag >= TWO32 ? Math.floor(tag / TWO32) : 0;
  const lo = tag >= TWO32 ? tag - hi * TWO32 : tag;
  buf[p] = hi >>> 24;
  buf[p + 1] = (hi >>> 16) & 0xff;
  buf[p + 2] = (hi >>> 8) & 0xff;
  buf[p + 3] = hi & 0xff;
  buf[p + 4] = lo >>> 24;
  buf[p + 5] = (lo >>> 16) & 0xff;
  buf[p + 6] = (lo >>> 8) & 0xff;
  buf[p + 7] = lo & 0xff;
  buf[p + 8] = d.redelivered ? 1 : 0;
  if (d.names !== null) {
    p = copyRange(d.names, 0, d.namesEnd, buf, p + 9);
  } else {
    p = writeShortStr(buf, p + 9, d.exchange);
    p = writeShortStr(buf, p, d.routingKey);
  }
  writeSize(buf, m + 3, p - m - FRAME_HEADER_SIZE);
  buf[p++] = FRAME_END;

  // content header
  const h = p;
  const bodyLen = d.bodyEnd - d.bodyStart;
  buf[h] = FRAME_HEADER;
  buf[h + 1] = chHi;
  buf[h + 2] = chLo;
  writeSize(buf, h + 3, 12 + d.propsEnd - d.propsStart);
  p = h + FRAME_HEADER_SIZE;
  buf[p] = 0;
  buf[p + 1] = 60;
  buf[p + 2] = 0;
  buf[p + 3] = 0;
  // body-size: bodies are far below 2^32, so the high word is 0.
  buf[p + 4] = 0;
  buf[p + 5] = 0;
  buf[p + 6] = 0;
  buf[p + 7] = 0;
  writeSize(buf, p + 8, bodyLen);
  p = copyRange(d.props, d.propsStart, d.propsEnd, buf, p + 12);
  buf[p++] = FRAME_END;

  // body
  const chunk = maxBodyChunk(frameMax);
  for (let s = d.bodyStart; s < d.bodyEnd; s += chunk) {
    const n = Math.min(chunk, d.bodyEnd - s);
    buf[p] = FRAME_BODY;
    buf[p + 1] = chHi;
    buf[p + 2] = chLo;
    writeSize(buf, p + 3, n);
    p = copyRange(d.body, s, s + n, buf, p + FRAME_HEADER_SIZE);
    buf[p++] = FRAME_END;
  }
  return p;
}

function writeSize(buf: Buffer, at: number, n: number): void {
  buf[at] = n >>> 24;
  buf[at + 1] = (n >>> 16) & 0xff;
  buf[at + 2] = (n >>> 8) & 0xff;
  buf[at + 3] = n & 0xff;
}

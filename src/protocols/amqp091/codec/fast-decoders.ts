/*
 * Allocation-free decoders for the methods every message passes through. Each fills a reusable
 * object (one per connection) instead of returning a new one. `off` is just past the class and
 * method ids, like the generated decoders, and errors are the same 501 FRAME_ERROR.
 *
 *   basic.publish 60/40  ticket:u16 exchange:shortstr routing-key:shortstr bits(mandatory, immediate)
 *   basic.ack     60/80  delivery-tag:u64 bits(multiple)
 *   basic.nack    60/120 delivery-tag:u64 bits(multiple, requeue)
 *   basic.reject  60/90  delivery-tag:u64 bits(requeue)
 *
 * Publishers send the same exchange and routing key over and over, so the last string seen for
 * each is kept with its bytes: a repeat costs a byte compare instead of a string allocation.
 */
import { malformed } from './amqp-codec-error.js';
import type { BasicAck, BasicNack, BasicPublish, BasicReject } from './generated/methods.generated.js';
import { readStrUnchecked, readU64 } from './primitives.js';

/** A one-entry cache from shortstr bytes to the string they decode to. */
export class ShortStrCache {
  readonly #bytes = Buffer.alloc(255);
  #len = -1;
  #str = '';

  read(buf: Buffer, off: number, len: number): string {
    if (len === this.#len) {
      const b = this.#bytes;
      let i = 0;
      while (i < len && buf[off + i] === b[i]) i++;
      if (i === len) return this.#str;
    }
    const s = readStrUnchecked(buf, off, len);
    buf.copy(this.#bytes, 0, off, off + len);
    this.#len = len;
    this.#str = s;
    return s;
  }
}

const exchangeCache = new ShortStrCache();
const routingKeyCache = new ShortStrCache();

export function newBasicPublish(): BasicPublish {
  return { ticket: 0, exchange: '', routingKey: '', mandatory: false, immediate: false };
}

export function newBasicAck(): BasicAck {
  return { deliveryTag: 0, multiple: false };
}

export function newBasicNack(): BasicNack {
  return { deliveryTag: 0, multiple: false, requeue: false };
}

export function newBasicReject(): BasicReject {
  return { deliveryTag: 0, requeue: false };
}

export function decodeBasicPublishInto(buf: Buffer, off: number, end: number, out: BasicPublish): void {
  // The smallest publish: ticket, two empty shortstrs, the bits octet.
  if (end - off < 5) throw malformed(60, 40);
  out.ticket = (buf[off] << 8) | buf[off + 1];
  let len = buf[off + 2];
  off += 3;
  if (off + len + 2 > end) throw malformed(60, 40);
  out.exchange = exchangeCache.read(buf, off, len);
  off += len;
  len = buf[off];
  off += 1;
  if (off + len + 1 !== end) throw malformed(60, 40);
  out.routingKey = routingKeyCache.read(buf, off, len);
  const bits = buf[off + len];
  out.mandatory = (bits & 1) !== 0;
  out.immediate = (bits & 2) !== 0;
}

export function decodeBasicAckInto(buf: Buffer, off: number, end: number, out: BasicAck): void {
  if (end - off !== 9) throw malformed(60, 80);
  out.deliveryTag = readU64(buf, off);
  out.multiple = (buf[off + 8] & 1) !== 0;
}

export function decodeBasicNackInto(buf: Buffer, off: number, end: number, out: BasicNack): void {
  if (end - off !== 9) throw malformed(60, 120);
  out.deliveryTag = readU64(buf, off);
  const bits = buf[off + 8];
  out.multiple = (bits & 1) !== 0;
  out.requeue = (bits & 2) !== 0;
}

export function decodeBasicRejectInto(buf: Buffer, off: number, end: number, out: BasicReject): void {
  if (end - off !== 9) throw malformed(60, 90);
  out.deliveryTag = readU64(buf, off);
  out.requeue = (buf[off + 8] & 1) !== 0;
}

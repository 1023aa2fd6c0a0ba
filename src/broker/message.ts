/**
 * The bytes a queue stores per message: where it was published and its AMQP-shaped content,
 * kept as raw property bytes so that delivery copies them without decoding.
 *
 *   u8 exchange length | exchange | u8 routing key length | routing key
 *   u32 property bytes length | property bytes (flags + list, as received) | body
 */

export const MessageFlags = {
  PERSISTENT: 1,
  /** The message has a per-message TTL (its expiration property); checked when it is taken. */
  EXPIRES: 2,
  /**
   * Not a message: the ids of the schedule entries just fired into this queue, appended after
   * them in the same log so that recovery can tell which ones already fired (broker.ts,
   * "exactly once across kill -9"). Never delivered, counted or dead-lettered.
   */
  FIRE_MARK: 4,
} as const;

/*
 * The names of the last message encoded, as bytes: a publisher sends to one exchange and key
 * over and over, and the codec hands back the same string objects for the same bytes, so the
 * check is a pointer compare and the copy replaces two UTF-8 encodings.
 */
let lastExchange = '';
let lastRoutingKey = '';
const lastNames = Buffer.alloc(2 + 255 + 255);
let lastNamesLen = 2;

export function encodeStoredMessage(exchange: string, routingKey: string, props: Buffer, body: Buffer): Buffer {
  let p = 0;
  let buf: Buffer;
  if (exchange === lastExchange && routingKey === lastRoutingKey) {
    const n = lastNamesLen;
    buf = Buffer.allocUnsafe(n + 4 + props.length + body.length);
    for (; p < n; p++) buf[p] = lastNames[p]!;
  } else {
    const exLen = Buffer.byteLength(exchange);
    const rkLen = Buffer.byteLength(routingKey);
    buf = Buffer.allocUnsafe(2 + exLen + rkLen + 4 + props.length + body.length);
    buf[p++] = exLen;
    p += buf.write(exchange, p, 'utf8');
    buf[p++] = rkLen;
    p += buf.write(routingKey, p, 'utf8');
    if (p <= lastNames.length) {
      for (let i = 0; i < p; i++) lastNames[i] = buf[i]!;
      lastNamesLen = p;
      lastExchange = exchange;
      lastRoutingKey = routingKey;
    }
  }
  buf.writeUInt32BE(props.length, p);
  p += 4;
  // TypedArray#set: Buffer#copy adds argument checks and, for views, a wrapper per call.
  buf.set(props, p);
  buf.set(body, p + props.length);
  return buf;
}

/** The same stored message with other property bytes (dead-lettering, delivery counts). */
export function withStoredProps(payload: Buffer, props: Buffer): Buffer {
  const v = new StoredMessageView().parse(payload);
  return encodeStoredMessage(v.exchange, v.routingKey, props, v.body);
}

/** Body bytes of a stored message, without parsing more than its header. */
export function storedBodySize(payload: Buffer): number {
  const exLen = payload[0]!;
  const rkLen = payload[1 + exLen]!;
  const at = 2 + exLen + rkLen;
  return payload.length - at - 4 - payload.readUInt32BE(at);
}

/** Offsets into a stored message, filled in place to avoid an object per delivery. */
export class StoredMessageView {
  buf: Buffer = Buffer.alloc(0);
  exStart = 0;
  exEnd = 0;
  rkStart = 0;
  rkEnd = 0;
  propsStart = 0;
  propsEnd = 0;

  parse(buf: Buffer): this {
    this.buf = buf;
    let p = 0;
    const exLen = buf[p++]!;
    this.exStart = p;
    this.exEnd = p += exLen;
    const rkLen = buf[p++]!;
    this.rkStart = p;
    this.rkEnd = p += rkLen;
    const propsLen = buf.readUInt32BE(p);
    p += 4;
    this.propsStart = p;
    this.propsEnd = p + propsLen;
    return this;
  }
  get exchange(): string {
    return this.buf.toString('utf8', this.exStart, this.exEnd);
  }
  get routingKey(): string {
    return this.buf.toString('utf8', this.rkStart, this.rkEnd);
  }
  get props(): Buffer {
    return this.buf.subarray(this.propsStart, this.propsEnd);
  }
  get body(): Buffer {
    return this.buf.subarray(this.propsEnd);
  }
  get bodySize(): number {
    return this.buf.length - this.propsEnd;
  }
}

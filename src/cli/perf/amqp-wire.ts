/*
 * The few AMQP 0-9-1 encodings the perf client and the sink server need, written by hand.
 *
 *   frame         type:u8 channel:u16 size:u32 payload[size] 0xCE          (§2.3.5, §4.2.3)
 *   method        class-id:u16 method-id:u16 arguments…                    (§4.2.4)
 *   header        class-id:u16 weight:u16 body-size:u64 flags:u16 props…   (§4.2.6)
 *   arguments     octet u8, short u16, long u32, longlong u64, shortstr len:u8 bytes,
 *                 longstr/table len:u32 bytes, consecutive bits packed LSB first (§4.2.5.2)
 *
 * Why not the broker's generated codec: the layer rules let the CLI reach the protocol only
 * through src/protocols/amqp091/mod.ts, which exports the server alone. A load generator with
 * its own small encoder also does not share a mistake with the server it measures (STYLE §8).
 * Only setup methods go through ArgWriter; the hot paths (publish templates, deliver/ack
 * parsing) are byte offsets in publisher.ts, consumer handling in perf-connection.ts and the
 * sink.
 */

export const FRAME_METHOD = 1;
export const FRAME_HEADER = 2;
export const FRAME_BODY = 3;
export const FRAME_HEARTBEAT = 8;
export const FRAME_END = 0xce;
/** type + channel + size before the payload. */
export const FRAME_HEADER_SIZE = 7;
/** The header plus the end octet. */
export const FRAME_OVERHEAD = 8;
export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
export const TWO32 = 4294967296;

/** class-id << 16 | method-id, the value a method frame's first four bytes read as u32. */
export const M = {
  ConnectionStart: 0x000a000a,
  ConnectionStartOk: 0x000a000b,
  ConnectionSecure: 0x000a0014,
  ConnectionTune: 0x000a001e,
  ConnectionTuneOk: 0x000a001f,
  ConnectionOpen: 0x000a0028,
  ConnectionOpenOk: 0x000a0029,
  ConnectionClose: 0x000a0032,
  ConnectionCloseOk: 0x000a0033,
  ConnectionBlocked: 0x000a003c,
  ConnectionUnblocked: 0x000a003d,
  ChannelOpen: 0x0014000a,
  ChannelOpenOk: 0x0014000b,
  ChannelFlow: 0x00140014,
  ChannelFlowOk: 0x00140015,
  ChannelClose: 0x00140028,
  ChannelCloseOk: 0x00140029,
  ExchangeDeclare: 0x0028000a,
  ExchangeDeclareOk: 0x0028000b,
  ExchangeDelete: 0x00280014,
  ExchangeDeleteOk: 0x00280015,
  QueueDeclare: 0x0032000a,
  QueueDeclareOk: 0x0032000b,
  QueueBind: 0x00320014,
  QueueBindOk: 0x00320015,
  QueuePurge: 0x0032001e,
  QueuePurgeOk: 0x0032001f,
  QueueDelete: 0x00320028,
  QueueDeleteOk: 0x00320029,
  BasicQos: 0x003c000a,
  BasicQosOk: 0x003c000b,
  BasicConsume: 0x003c0014,
  BasicConsumeOk: 0x003c0015,
  BasicCancel: 0x003c001e,
  BasicCancelOk: 0x003c001f,
  BasicPublish: 0x003c0028,
  BasicReturn: 0x003c0032,
  BasicDeliver: 0x003c003c,
  BasicGet: 0x003c0046,
  BasicGetOk: 0x003c0047,
  BasicGetEmpty: 0x003c0048,
  BasicAck: 0x003c0050,
  BasicReject: 0x003c005a,
  BasicNack: 0x003c0078,
  ConfirmSelect: 0x0055000a,
  ConfirmSelectOk: 0x0055000b,
} as const;

const METHOD_NAMES = new Map<number, string>(
  Object.entries(M).map(([name, key]) => [key, name.replace(/^(Connection|Channel|Exchange|Queue|Basic|Confirm)/, '$1.').replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase()]),
);

/** "basic.deliver" for a key, or "60/60" for one this file does not know. */
export function methodName(key: number): string {
  return METHOD_NAMES.get(key) ?? `${key >>> 16}/${key & 0xffff}`;
}

/** An unsigned 64-bit field as a number (exact below 2^53, which delivery tags stay under). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * TWO32 + buf.readUInt32BE(off + 4);
}

export function writeU64(buf: Buffer, off: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO32), off);
  buf.writeUInt32BE(v >>> 0, off + 4);
}

/** A shortstr at off: the string and the offset after it. */
export function readShortStr(buf: Buffer, off: number): [string, number] {
  const len = buf[off]!;
  return [buf.toString('utf8', off + 1, off + 1 + len), off + 1 + len];
}

export function readLongStr(buf: Buffer, off: number): [string, number] {
  const len = buf.readUInt32BE(off);
  return [buf.toString('utf8', off + 4, off + 4 + len), off + 4 + len];
}

/** Values this encoder writes into a field table: S longstr, t bool, l int64, F nested table. */
export type SimpleValue = string | boolean | number | { readonly [k: string]: SimpleValue };

/** Encodes a field table body with its u32 length prefix. */
export function encodeTable(t: { readonly [k: string]: SimpleValue }): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(t)) {
    const key = Buffer.from(k, 'utf8');
    parts.push(Buffer.from([key.length]), key);
    if (typeof v === 'string') {
      const s = Buffer.from(v, 'utf8');
      const h = Buffer.alloc(5);
      h[0] = 0x53; // 'S'
      h.writeUInt32BE(s.length, 1);
      parts.push(h, s);
    } else if (typeof v === 'boolean') {
      parts.push(Buffer.from([0x74, v ? 1 : 0])); // 't'
    } else if (typeof v === 'number') {
      const h = Buffer.alloc(9);
      h[0] = 0x6c; // 'l'
      h.writeBigInt64BE(BigInt(Math.trunc(v)), 1);
      parts.push(h);
    } else {
      parts.push(Buffer.from([0x46]), encodeTable(v)); // 'F'
    }
  }
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length, 0);
  return Buffer.concat([len, body]);
}

/** Size of one field value of type `tag` at off (the tag already read), for skipping. */
function fieldValueSize(tag: number, buf: Buffer, off: number): number {
  switch (tag) {
    case 0x74: case 0x62: case 0x42: return 1; // t b B
    case 0x73: case 0x75: return 2; // s u
    case 0x49: case 0x69: case 0x66: return 4; // I i f
    case 0x6c: case 0x4c: case 0x64: case 0x54: return 8; // l L d T
    case 0x44: return 5; // D
    case 0x56: return 0; // V
    case 0x53: case 0x78: case 0x41: case 0x46: return 4 + buf.readUInt32BE(off); // S x A F
    default: throw new Error(`field table: unknown field type 0x${tag.toString(16)}`);
  }
}

/** The longstr ('S') entries at the top level of a table at off (with its length prefix). */
export function readTableStrings(buf: Buffer, off: number): Map<string, string> {
  const out = new Map<string, string>();
  const end = off + 4 + buf.readUInt32BE(off);
  let p = off + 4;
  while (p < end) {
    const [key, afterKey] = readShortStr(buf, p);
    const tag = buf[afterKey]!;
    const size = fieldValueSize(tag, buf, afterKey + 1);
    if (tag === 0x53) out.set(key, buf.toString('utf8', afterKey + 5, afterKey + 1 + size));
    p = afterKey + 1 + size;
  }
  return out;
}

/** Skips a table at off; returns the offset after it. */
export function skipTable(buf: Buffer, off: number): number {
  return off + 4 + buf.readUInt32BE(off);
}

const EMPTY_TABLE = Buffer.from([0, 0, 0, 0]);

/** Builds method arguments for setup-time frames (not used per message). */
export class ArgWriter {
  #parts: Buffer[] = [];
  #bits = -1;
  #bitCount = 0;

  #endBits(): void {
    if (this.#bits >= 0) this.#parts.push(Buffer.from([this.#bits]));
    this.#bits = -1;
    this.#bitCount = 0;
  }

  u8(v: number): this {
    this.#endBits();
    this.#parts.push(Buffer.from([v]));
    return this;
  }

  u16(v: number): this {
    this.#endBits();
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v, 0);
    this.#parts.push(b);
    return this;
  }

  u32(v: number): this {
    this.#endBits();
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v, 0);
    this.#parts.push(b);
    return this;
  }

  u64(v: number): this {
    this.#endBits();
    const b = Buffer.alloc(8);
    writeU64(b, 0, v);
    this.#parts.push(b);
    return this;
  }

  shortstr(s: string): this {
    this.#endBits();
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new Error(`shortstr longer than 255 bytes: ${s.slice(0, 40)}…`);
    this.#parts.push(Buffer.from([b.length]), b);
    return this;
  }

  longstr(s: string | Buffer): this {
    this.#endBits();
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    const h = Buffer.alloc(4);
    h.writeUInt32BE(b.length, 0);
    this.#parts.push(h, b);
    return this;
  }

  /** Consecutive bits share an octet, least significant first (§4.2.5.2). */
  bit(v: boolean): this {
    if (this.#bits < 0 || this.#bitCount === 8) {
      this.#endBits();
      this.#bits = 0;
    }
    if (v) this.#bits |= 1 << this.#bitCount;
    this.#bitCount++;
    return this;
  }

  table(t?: { readonly [k: string]: SimpleValue } | Buffer): this {
    this.#endBits();
    this.#parts.push(t === undefined ? EMPTY_TABLE : Buffer.isBuffer(t) ? t : encodeTable(t));
    return this;
  }

  done(): Buffer {
    this.#endBits();
    return Buffer.concat(this.#parts);
  }
}

/** A whole method frame: header, class and method ids, arguments, end octet. */
export function methodFrame(channel: number, key: number, args: Buffer = Buffer.alloc(0)): Buffer {
  const f = Buffer.allocUnsafe(FRAME_OVERHEAD + 4 + args.length);
  f[0] = FRAME_METHOD;
  f.writeUInt16BE(channel, 1);
  f.writeUInt32BE(4 + args.length, 3);
  f.writeUInt32BE(key, 7);
  f.set(args, 11);
  f[f.length - 1] = FRAME_END;
  return f;
}

/** Writes a frame header (type, channel, size) at off. */
export function writeFrameHeader(buf: Buffer, off: number, type: number, channel: number, size: number): void {
  buf[off] = type;
  buf.writeUInt16BE(channel, off + 1);
  buf.writeUInt32BE(size, off + 3);
}

/**
 * Property flags of the content header (§4.2.6.1, basic class): bit 15 content-type … bit 2
 * app-id, written in that order. Only the two the perf tool sends are here.
 */
export const PROP_HEADERS = 0x2000;
export const PROP_DELIVERY_MODE = 0x1000;

/**
 * One message as wire bytes: method frame (basic.publish or basic.deliver arguments given),
 * content header with the properties, body frames of at most frameMax - 8 bytes each. Returns
 * the template and the offset of the first body byte (where the send timestamp goes), or -1
 * for an empty body.
 */
export function contentTemplate(
  channel: number,
  methodKey: number,
  methodArgs: Buffer,
  bodySize: number,
  frameMax: number,
  flags: number,
  props: Buffer,
  fill: number,
): { bytes: Buffer; bodyOffset: number } {
  const maxChunk = frameMax - FRAME_OVERHEAD;
  const bodyFrames = bodySize === 0 ? 0 : Math.ceil(bodySize / maxChunk);
  const methodLen = FRAME_OVERHEAD + 4 + methodArgs.length;
  const headerLen = FRAME_OVERHEAD + 14 + props.length;
  const total = methodLen + headerLen + bodyFrames * FRAME_OVERHEAD + bodySize;
  const b = Buffer.alloc(total);
  b.set(methodFrame(channel, methodKey, methodArgs), 0);
  let p = methodLen;
  writeFrameHeader(b, p, FRAME_HEADER, channel, 14 + props.length);
  b.writeUInt16BE(60, p + 7);
  b.writeUInt16BE(0, p + 9);
  writeU64(b, p + 11, bodySize);
  b.writeUInt16BE(flags, p + 19);
  b.set(props, p + 21);
  b[p + headerLen - 1] = FRAME_END;
  p += headerLen;
  const bodyOffset = bodySize === 0 ? -1 : p + FRAME_HEADER_SIZE;
  for (let left = bodySize; left > 0; ) {
    const n = Math.min(left, maxChunk);
    writeFrameHeader(b, p, FRAME_BODY, channel, n);
    b.fill(fill, p + FRAME_HEADER_SIZE, p + FRAME_HEADER_SIZE + n);
    b[p + FRAME_HEADER_SIZE + n] = FRAME_END;
    p += FRAME_OVERHEAD + n;
    left -= n;
  }
  return { bytes: b, bodyOffset };
}

/** The longest prefix of the body that carries the send time (Float64 LE, ms since epoch). */
export const TIMESTAMP_SIZE = 8;

/** Wall-clock milliseconds with sub-microsecond resolution that agree across worker threads. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

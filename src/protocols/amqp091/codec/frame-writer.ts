/*
 * Writing frames into a caller's slab (AMQP 0-9-1 §4.2.3):
 *
 *   frame = type:u8 channel:u16 size:u32 payload 0xCE
 *   content = method frame, header frame (class-id:u16 weight:u16=0 body-size:u64 properties),
 *             then body frames of at most frame_max - 8 bytes each (none for an empty body)
 *
 * Nothing here allocates. A method payload's size is unknown until it is encoded, so
 * beginFrame reserves the size field and endFrame backpatches it. Every writer bound-checks
 * and throws RangeError when the slab is too small: the session sizes its slab from frame_max
 * (see contentFramesSize) and flushes before a write that would not fit.
 */
import { encodeProperties, type BasicProperties } from './content-header.js';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD } from './generated/constants.generated.js';
import { encodeMethod, type AmqpMethodArgs } from './generated/methods.generated.js';
import { FRAME_HEADER_SIZE, FRAME_OVERHEAD } from './parse-frame.js';
import { writeU64 } from './primitives.js';

/** A generated encodeXxx: writes a method payload at `off`, returns the offset after it. */
export type MethodEncoder<A> = (buf: Buffer, off: number, args: A) => number;

function room(buf: Buffer, off: number, n: number): void {
  if (off + n > buf.length) throw new RangeError(`frame does not fit: need ${off + n} bytes, buffer has ${buf.length}`);
}

/** Writes type and channel and reserves the size; returns where the payload goes. */
export function beginFrame(buf: Buffer, off: number, type: number, channel: number): number {
  room(buf, off, FRAME_OVERHEAD);
  buf[off] = type;
  buf[off + 1] = channel >>> 8;
  buf[off + 2] = channel & 0xff;
  return off + FRAME_HEADER_SIZE;
}

/** Backpatches the size of the frame begun at `frameStart` and writes the end octet. */
export function endFrame(buf: Buffer, frameStart: number, payloadEnd: number): number {
  room(buf, payloadEnd, 1);
  buf.writeUInt32BE(payloadEnd - frameStart - FRAME_HEADER_SIZE, frameStart + 3);
  buf[payloadEnd] = FRAME_END;
  return payloadEnd + 1;
}

/** One method frame: `encode` is a generated encodeXxx. Returns the offset after the frame. */
export function writeMethodFrame<A>(buf: Buffer, off: number, channel: number, encode: MethodEncoder<A>, args: A): number {
  return endFrame(buf, off, encode(buf, beginFrame(buf, off, FRAME_METHOD, channel), args));
}

/** One method frame for any method by name (a switch away from writeMethodFrame). */
export function writeMethod(buf: Buffer, off: number, channel: number, m: AmqpMethodArgs): number {
  return endFrame(buf, off, encodeMethod(buf, beginFrame(buf, off, FRAME_METHOD, channel), m));
}

export function writeHeartbeat(buf: Buffer, off: number): number {
  room(buf, off, FRAME_OVERHEAD);
  buf[off] = FRAME_HEARTBEAT;
  buf.fill(0, off + 1, off + 7);
  buf[off + 7] = FRAME_END;
  return off + FRAME_OVERHEAD;
}

/** A content header frame carrying raw property bytes props[propsStart, propsEnd) unchanged. */
export function writeHeaderFrame(
  buf: Buffer,
  off: number,
  channel: number,
  bodySize: number,
  props: Buffer,
  propsStart = 0,
  propsEnd = props.length,
  classId = 60,
): number {
  const propsLen = propsEnd - propsStart;
  room(buf, off, FRAME_OVERHEAD + 12 + propsLen);
  let p = beginFrame(buf, off, FRAME_HEADER, channel);
  buf[p] = classId >>> 8;
  buf[p + 1] = classId & 0xff;
  buf[p + 2] = 0;
  buf[p + 3] = 0;
  p = writeU64(buf, p + 4, bodySize);
  p += props.copy(buf, p, propsStart, propsEnd);
  return endFrame(buf, off, p);
}

/** A content header frame with properties encoded from an object. */
export function writePropertiesFrame(buf: Buffer, off: number, channel: number, bodySize: number, props: BasicProperties): number {
  let p = beginFrame(buf, off, FRAME_HEADER, channel);
  p = buf.writeUInt32BE(60 * 65536, p);
  p = writeU64(buf, p, bodySize);
  p = encodeProperties(buf, p, props);
  return endFrame(buf, off, p);
}

/** Largest body chunk per frame: frame_max counts the 8 bytes of framing (0 = no limit). */
export function maxBodyChunk(frameMax: number): number {
  return frameMax === 0 ? Number.MAX_SAFE_INTEGER : frameMax - FRAME_OVERHEAD;
}

/** Bytes the body frames for a body of `bodyLen` take. */
export function bodyFramesSize(bodyLen: number, frameMax: number): number {
  if (bodyLen === 0) return 0;
  return bodyLen + FRAME_OVERHEAD * Math.ceil(bodyLen / maxBodyChunk(frameMax));
}

/** Bytes of a header frame plus body frames for the given property and body lengths. */
export function contentFramesSize(propsLen: number, bodyLen: number, frameMax: number): number {
  return FRAME_OVERHEAD + 12 + propsLen + bodyFramesSize(bodyLen, frameMax);
}

/** body[bodyStart, bodyEnd) as body frames of at most frame_max - 8 bytes. */
export function writeBodyFrames(
  buf: Buffer,
  off: number,
  channel: number,
  body: Buffer,
  bodyStart: number,
  bodyEnd: number,
  frameMax: number,
): number {
  room(buf, off, bodyFramesSize(bodyEnd - bodyStart, frameMax));
  const chunk = maxBodyChunk(frameMax);
  const chHi = channel >>> 8;
  const chLo = channel & 0xff;
  for (let s = bodyStart; s < bodyEnd; s += chunk) {
    const n = Math.min(chunk, bodyEnd - s);
    buf[off] = FRAME_BODY;
    buf[off + 1] = chHi;
    buf[off + 2] = chLo;
    buf.writeUInt32BE(n, off + 3);
    off += FRAME_HEADER_SIZE;
    off += body.copy(buf, off, s, s + n);
    buf[off] = FRAME_END;
    off += 1;
  }
  return off;
}

/**
 * A content-carrying method (basic.get-ok, basic.return, or a publish in tests) with its header
 * and body frames. Deliveries have a hand-tuned writer in write-deliver.ts.
 */
export function writeContentMethod<A>(
  buf: Buffer,
  off: number,
  channel: number,
  encode: MethodEncoder<A>,
  args: A,
  props: Buffer,
  body: Buffer,
  frameMax: number,
): number {
  off = writeMethodFrame(buf, off, channel, encode, args);
  off = writeHeaderFrame(buf, off, channel, body.length, props);
  return writeBodyFrames(buf, off, channel, body, 0, body.length, frameMax);
}

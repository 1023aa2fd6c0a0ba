/*
 * Frame (AMQP 0-9-1 §2.3.5, §4.2.3):
 *
 *   0      1         3         7              7+size    8+size
 *   +------+---------+---------+ +----------+ +--------+
 *   | type | channel |  size   | | payload  | |  0xCE  |
 *   +------+---------+---------+ +----------+ +--------+
 *     u8      u16       u32       size bytes     u8
 *
 *   type: 1 method, 2 content header, 3 content body, 8 heartbeat (payload empty, channel 0)
 *
 * parseFrame is a pure function over bytes: it never copies, slices or allocates. The caller
 * keeps a cursor over its socket chunk and, when a frame straddles two chunks, copies only that
 * partial frame into a reusable buffer (FrameHeader.need says how big it must get).
 */
import { frameError } from './amqp-codec-error.js';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD } from './generated/constants.generated.js';

/** Bytes before the payload (type, channel, size); a frame adds one more, the end octet. */
export const FRAME_HEADER_SIZE = 7;
/** Header plus end octet: the bytes a frame costs beyond its payload. */
export const FRAME_OVERHEAD = 8;

/** parseFrame's answer when the frame is not complete yet. */
export const NEED_MORE = -1;

/** Filled in place by parseFrame so that the hot path allocates nothing per frame. */
export class FrameHeader {
  type = 0;
  channel = 0;
  /** Payload size from the header. */
  size = 0;
  payloadStart = 0;
  payloadEnd = 0;
  /** Bytes the whole frame needs from its start: 7 until the header is in, then 8 + size. */
  need = FRAME_HEADER_SIZE;
}

/**
 * Parses the frame starting at `off` in buf[off, end). Returns the offset just past it, with
 * `out` filled, or NEED_MORE (with `out.need` set) if buf does not hold all of it yet.
 *
 * Throws AmqpCodecError 501 FRAME_ERROR, as RabbitMQ does (rabbit_reader handle_input and
 * handle_frame), for:
 *   - size > frameMax. RabbitMQ allows frameMax itself rather than frameMax - 8 because
 *     clients are often off by the 8-byte overhead (its FRAME_SIZE_FUDGE); so does this.
 *     Checked as soon as the header is in, before waiting for a payload we will refuse.
 *   - an unknown frame type, or a heartbeat with a payload (analyze_frame → unknown_frame).
 *   - an end octet other than 0xCE.
 * frameMax 0 means no limit (§4.2.1 connection.tune).
 */
export function parseFrame(buf: Buffer, off: number, end: number, frameMax: number, out: FrameHeader): number {
  if (end - off < FRAME_HEADER_SIZE) {
    out.need = FRAME_HEADER_SIZE;
    return NEED_MORE;
  }
  const type = buf[off];
  const channel = (buf[off + 1] << 8) | buf[off + 2];
  const size = buf.readUInt32BE(off + 3);
  if (type !== FRAME_METHOD && type !== FRAME_HEADER && type !== FRAME_BODY && type !== FRAME_HEARTBEAT) {
    throw frameError(`unknown frame type ${type}`);
  }
  if (frameMax !== 0 && size > frameMax) throw frameError(`frame size ${size} exceeds frame_max ${frameMax}`);
  if (type === FRAME_HEARTBEAT && size !== 0) throw frameError(`heartbeat frame with a ${size}-byte payload`);
  const total = FRAME_OVERHEAD + size;
  out.need = total;
  if (end - off < total) return NEED_MORE;
  const payloadEnd = off + FRAME_HEADER_SIZE + size;
  if (buf[payloadEnd] !== FRAME_END) throw frameError(`invalid frame end octet 0x${buf[payloadEnd].toString(16)}`);
  out.type = type;
  out.channel = channel;
  out.size = size;
  out.payloadStart = off + FRAME_HEADER_SIZE;
  out.payloadEnd = payloadEnd;
  return payloadEnd + 1;
}

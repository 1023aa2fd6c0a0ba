/*
 * Splits a byte stream into AMQP frames (§2.3.5):
 *
 *   type:u8 channel:u16 size:u32 payload[size] 0xCE
 *
 * Each complete frame is handed to the sink as (type, channel, buffer, payload start, payload
 * end) over the socket chunk itself: nothing is sliced or copied. Only a frame that straddles
 * two chunks is copied, and only that frame (the rest of the next chunk is read in place).
 */
import { FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD } from './amqp-wire.js';

export interface FrameSink {
  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void;
}

export class FrameReader {
  #sink: FrameSink;
  /** Bytes of a frame that began in an earlier chunk, or null. */
  #pending: Buffer | null = null;
  /** Largest payload accepted; 0 for no limit. */
  maxPayload: number;

  constructor(sink: FrameSink, maxPayload = 0) {
    this.#sink = sink;
    this.maxPayload = maxPayload;
  }

  push(chunk: Buffer): void {
    let off = 0;
    if (this.#pending !== null) {
      off = this.#completePending(chunk);
      if (off < 0) return;
    }
    const len = chunk.length;
    const sink = this.#sink;
    while (len - off >= FRAME_HEADER_SIZE) {
      const size = chunk.readUInt32BE(off + 3);
      this.#checkSize(size);
      const end = off + FRAME_HEADER_SIZE + size;
      if (end >= len) break;
      if (chunk[end] !== FRAME_END) throw new Error(`AMQP framing error: end octet 0x${chunk[end]!.toString(16)} at ${end}`);
      sink.onFrame(chunk[off]!, chunk.readUInt16BE(off + 1), chunk, off + FRAME_HEADER_SIZE, end);
      off = end + 1;
    }
    if (off < len) this.#pending = Buffer.from(chunk.subarray(off));
  }

  /** Adds the start of chunk to the pending frame; returns how much of chunk it used, or -1. */
  #completePending(chunk: Buffer): number {
    let p = this.#pending!;
    let used = 0;
    if (p.length < FRAME_HEADER_SIZE) {
      used = Math.min(FRAME_HEADER_SIZE - p.length, chunk.length);
      p = Buffer.concat([p, chunk.subarray(0, used)]);
      if (p.length < FRAME_HEADER_SIZE) {
        this.#pending = p;
        return -1;
      }
    }
    const size = p.readUInt32BE(3);
    this.#checkSize(size);
    const total = FRAME_OVERHEAD + size;
    const need = total - p.length;
    if (chunk.length - used < need) {
      this.#pending = Buffer.concat([p, chunk.subarray(used)]);
      return -1;
    }
    const frame = Buffer.allocUnsafe(total);
    frame.set(p, 0);
    frame.set(chunk.subarray(used, used + need), p.length);
    this.#pending = null;
    if (frame[total - 1] !== FRAME_END) throw new Error(`AMQP framing error: end octet 0x${frame[total - 1]!.toString(16)}`);
    this.#sink.onFrame(frame[0]!, frame.readUInt16BE(1), frame, FRAME_HEADER_SIZE, total - 1);
    return used + need;
  }

  #checkSize(size: number): void {
    if (this.maxPayload !== 0 && size > this.maxPayload) throw new Error(`AMQP framing error: frame of ${size} bytes exceeds frame_max ${this.maxPayload}`);
  }
}

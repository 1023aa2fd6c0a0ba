/**
 * Writes a content-carrying method (basic.get-ok, basic.return) straight into the connection's
 * output: method frame, header frame with the raw property bytes, body frames.
 */
import { contentFramesSize, writeBodyFrames, writeHeaderFrame, writeMethod, type AmqpMethodArgs } from '../codec/mod.js';
import type { AmqpConnection } from './connection.js';

export function sendContent(
  conn: AmqpConnection,
  channel: number,
  m: AmqpMethodArgs,
  src: Buffer,
  propsStart: number,
  propsEnd: number,
  bodyStart: number,
  bodyEnd: number,
  body: Buffer = src,
): void {
  const out = conn.out;
  const fm = conn.frameMax;
  const size = 1024 + contentFramesSize(propsEnd - propsStart, bodyEnd - bodyStart, fm);
  const buf = out.reserve(size);
  let p = writeMethod(buf, out.pos, channel, m);
  p = writeHeaderFrame(buf, p, channel, bodyEnd - bodyStart, src, propsStart, propsEnd);
  out.pos = writeBodyFrames(buf, p, channel, body, bodyStart, bodyEnd, fm);
}

/**
 * Content assembly for basic.publish (§4.2.6): the method frame, then one content header
 * frame, then body frames until the header's body size is reached. Nothing is allocated for
 * the common case, a body in one frame: it is used in place, a view of the socket chunk. A
 * body cut over several frames is copied into one buffer of its declared size.
 */
import { ContentHeader, decodeBasicPublishInto, newBasicPublish, parseContentHeader, ReplyCode } from '../codec/mod.js';
import { channelError, connectionError } from './reply-codes.js';

const enum Expect {
  Method,
  Header,
  Body,
}

export class PublishAssembler {
  #expect = Expect.Method;
  /** The basic.publish being assembled, decoded in place (one object per channel). */
  readonly publish = newBasicPublish();
  readonly #header = new ContentHeader();
  #props: Buffer = Buffer.alloc(0);
  #bodySize = 0;
  #body: Buffer | null = null;
  #bodyPos = 0;

  /** No content is in progress: the next frame must be a method. */
  get expectsMethod(): boolean {
    return this.#expect === Expect.Method;
  }

  /** The raw property bytes of the message being assembled. */
  get props(): Buffer {
    return this.#props;
  }

  /** basic.publish: its content header comes next. `off` is just past the class and method ids. */
  method(buf: Buffer, off: number, end: number): void {
    decodeBasicPublishInto(buf, off, end, this.publish);
    if (this.publish.immediate) throw connectionError(ReplyCode.NOT_IMPLEMENTED, 'NOT_IMPLEMENTED - immediate=true');
    this.#expect = Expect.Header;
  }

  /** A content header frame; returns the (empty) body if the message is complete without one. */
  header(buf: Buffer, start: number, end: number, maxMessageSize: number): Buffer | null {
    if (this.#expect !== Expect.Header) throw connectionError(ReplyCode.UNEXPECTED_FRAME, 'UNEXPECTED_FRAME - unexpected content header frame');
    const h = this.#header;
    parseContentHeader(buf, start, end, h);
    if (h.classId !== 60) throw connectionError(ReplyCode.UNEXPECTED_FRAME, `UNEXPECTED_FRAME - content header for class ${h.classId}, expected 60`);
    this.#props = buf.subarray(h.propsStart, h.propsEnd);
    this.#bodySize = h.bodySize;
    if (h.bodySize > maxMessageSize) {
      this.#expect = Expect.Method;
      throw channelError(ReplyCode.PRECONDITION_FAILED, `PRECONDITION_FAILED - message size ${h.bodySize} is larger than configured max size ${maxMessageSize}`);
    }
    this.#body = null;
    this.#bodyPos = 0;
    if (h.bodySize === 0) {
      this.#expect = Expect.Method;
      return Buffer.alloc(0);
    }
    this.#expect = Expect.Body;
    return null;
  }

  /** A content body frame; returns the whole body once it is complete. */
  body(buf: Buffer, start: number, end: number): Buffer | null {
    if (this.#expect !== Expect.Body) throw connectionError(ReplyCode.UNEXPECTED_FRAME, 'UNEXPECTED_FRAME - unexpected content body frame');
    const n = end - start;
    if (this.#bodyPos + n > this.#bodySize) throw connectionError(ReplyCode.FRAME_ERROR, 'FRAME_ERROR - content body exceeds the size in its header');
    if (this.#bodyPos === 0 && n === this.#bodySize) {
      // The common case: the whole body in one frame, used in place.
      this.#expect = Expect.Method;
      return buf.subarray(start, end);
    }
    if (this.#body === null) {
      this.#body = Buffer.allocUnsafe(this.#bodySize);
      // The header's property bytes live in an earlier socket chunk; keep our own copy.
      this.#props = Buffer.from(this.#props);
    }
    buf.copy(this.#body, this.#bodyPos, start, end);
    this.#bodyPos += n;
    if (this.#bodyPos !== this.#bodySize) return null;
    this.#expect = Expect.Method;
    const body = this.#body;
    this.#body = null;
    return body;
  }

  /** Drops any content in progress (the channel is closing). */
  reset(): void {
    this.#expect = Expect.Method;
  }
}

/**
 * A connection's outgoing bytes: frames are encoded into a slab and the slab is written to the
 * socket once per event-loop turn (research §5.2: one write per message gives 164k msg/s, one
 * per turn over 6M). Each write hands the socket a view of the bytes encoded since the last one
 * and the next frames go into the rest of the same slab, so a new slab is allocated per
 * SLAB_BYTES of output, not per write: a fresh 256 KiB buffer per turn was hundreds of MB/s of
 * external memory at a few thousand turns a second, and V8 answered with several full
 * mark-compacts a second. A frame larger than what is left gets a buffer of its own.
 */
import type { Socket } from 'node:net';

const SLAB_BYTES = 256 * 1024;
/** Below this much room left after a write, the next frames start a new slab. */
const MIN_ROOM = 16 * 1024;

export class FrameOutput {
  buf: Buffer = Buffer.allocUnsafe(SLAB_BYTES);
  pos = 0;
  /** Start of the bytes not yet handed to the socket. */
  #start = 0;
  #socket: Socket;
  #scheduled = false;
  #closed = false;
  /** Bytes handed to the socket that it has not sent yet (kernel or user-space queue). */
  onDrain: (() => void) | null = null;
  backlogged = false;
  lastWriteAt = Date.now();

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('drain', () => {
      this.backlogged = false;
      if (this.onDrain) this.onDrain();
    });
  }

  /** Makes room for `n` bytes at `pos`, flushing first if needed; returns the buffer to write to. */
  reserve(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      this.flush();
      if (this.pos + n > this.buf.length) this.#newSlab(n);
    }
    this.#schedule();
    return this.buf;
  }

  #newSlab(min: number): void {
    this.buf = Buffer.allocUnsafe(Math.max(SLAB_BYTES, min));
    this.pos = 0;
    this.#start = 0;
  }

  #schedule(): void {
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushTick);
    }
  }

  readonly #flushTick = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  flush(): void {
    if (this.pos === this.#start || this.#closed) return;
    const out = this.buf.subarray(this.#start, this.pos);
    // The socket owns `out` until it is sent; later frames go after it.
    this.#start = this.pos;
    if (this.buf.length - this.pos < MIN_ROOM) this.#newSlab(0);
    this.lastWriteAt = Date.now();
    if (!this.#socket.write(out)) this.backlogged = true;
  }

  close(): void {
    this.flush();
    this.#closed = true;
  }
}

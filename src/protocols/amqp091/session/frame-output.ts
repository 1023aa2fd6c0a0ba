/**
 * A connection's outgoing bytes: frames are encoded into a slab and the slab is written to the
 * socket once per event-loop turn (research §5.2: one write per message gives 164k msg/s, one
 * per turn over 6M). A frame larger than the slab gets a buffer of its own.
 */
import type { Socket } from 'node:net';

const SLAB_BYTES = 256 * 1024;

export class FrameOutput {
  buf: Buffer = Buffer.allocUnsafe(SLAB_BYTES);
  pos = 0;
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
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    }
    this.#schedule();
    return this.buf;
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
    if (this.pos === 0 || this.#closed) return;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(SLAB_BYTES);
    this.pos = 0;
    this.lastWriteAt = Date.now();
    if (!this.#socket.write(out)) this.backlogged = true;
  }

  close(): void {
    this.flush();
    this.#closed = true;
  }
}

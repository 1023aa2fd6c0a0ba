/**
 * A queue's delivered mark: every message with a ref below it may have been handed to a
 * consumer. After a restart the queue marks such messages redelivered, as RabbitMQ's queue
 * index does with its delivery records, so a consumer that treats the flag as "maybe seen
 * before" still gets that hint after kill -9.
 *
 * The mark is written before a delivery passes it, reserving RESERVE refs ahead, so it costs one
 * small synchronous write per RESERVE deliveries. It reaches the page cache, not the disk
 * (no fsync): it holds across kill -9; after a power loss the hint can be missing, never wrong
 * the other way (an undelivered message flagged redelivered is allowed: the flag is a hint).
 *
 * File `delivered` in the log directory: f64 mark | u32 crc32c of the first 8 bytes.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { crc32c } from '../../common/mod.js';
import { writevAtSync } from '../io.js';

const FILE = 'delivered';
const RESERVE = 512;

export class DeliveredMark {
  readonly #path: string;
  #fd = -1;
  /** What the file says (refs below it may have been delivered). */
  #written: number;
  /** Refs below this were possibly delivered before this process opened the queue. */
  readonly recovered: number;
  readonly #buf = Buffer.alloc(12);

  /** Reads the mark left by earlier runs; `logEnd` bounds it (refs past it are new). */
  constructor(dir: string, logEnd: number) {
    this.#path = `${dir}/${FILE}`;
    let mark = 0;
    try {
      const data = readFileSync(this.#path);
      if (data.length >= 12 && crc32c(data, 0, 8) === data.readUInt32LE(8)) mark = data.readDoubleLE(0);
    } catch {
      // No file: nothing was delivered from this queue yet (or it predates the mark).
    }
    this.#written = mark;
    this.recovered = Math.min(mark, logEnd);
  }

  /** Call before handing out `ref`. */
  delivering(ref: number): void {
    if (ref < this.#written) return;
    const mark = ref + RESERVE;
    this.#buf.writeDoubleLE(mark, 0);
    this.#buf.writeUInt32LE(crc32c(this.#buf, 0, 8), 8);
    if (this.#fd < 0) this.#fd = openSync(this.#path, 'w');
    writevAtSync(this.#fd, [this.#buf], 0);
    this.#written = mark;
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}

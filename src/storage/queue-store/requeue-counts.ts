/**
 * How many times each message of a queue was put back (nack/reject with requeue, a closed
 * channel), for queues that count deliveries (x-delivery-limit): quorum queues keep this count
 * in their log, so a poison message cannot get a fresh allowance from a broker restart. Only
 * messages put back at least once have an entry; an ack forgets it.
 *
 * File `requeues` in the log directory, append-only records: f64 ref | u32 count | u32 crc32c
 * of the first 12 bytes; the last record of a ref wins, count 0 forgets it. Written to the page
 * cache (no fsync), like the delivered mark: it holds across kill -9, and losing the last few
 * counts to a power cut only grants a few extra deliveries. Rewritten from memory when mostly
 * stale.
 */
import { closeSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { crc32c } from '../../common/mod.js';
import { writevAtSync } from '../io.js';

const FILE = 'requeues';
const RECORD = 16;
/** Rewrite once the file holds this many records and four times more than live entries. */
const COMPACT_MIN_RECORDS = 4096;

export class RequeueCounts {
  readonly #path: string;
  readonly #counts = new Map<number, number>();
  #fd = -1;
  #records = 0;
  #closed = false;
  /** A write failed: the next append rewrites the whole file instead. */
  #broken = false;
  readonly #buf = Buffer.alloc(RECORD);

  /** Reads what earlier runs left; `live(ref)` drops the entries of messages acked since. */
  constructor(dir: string, live: (ref: number) => boolean) {
    this.#path = `${dir}/${FILE}`;
    let data: Buffer;
    try {
      data = readFileSync(this.#path);
    } catch {
      return; // none yet
    }
    // A torn or corrupt tail ends the file (appends only; a bad record cannot be followed by good ones we need).
    for (let p = 0; p + RECORD <= data.length; p += RECORD) {
      if (crc32c(data, p, p + 12) !== data.readUInt32LE(p + 12)) break;
      const ref = data.readDoubleLE(p);
      const n = data.readUInt32LE(p + 8);
      if (n === 0) this.#counts.delete(ref);
      else this.#counts.set(ref, n);
    }
    for (const ref of this.#counts.keys()) if (!live(ref)) this.#counts.delete(ref);
    this.#rewrite();
  }

  get size(): number {
    return this.#counts.size;
  }

  get(ref: number): number {
    return this.#counts.size === 0 ? 0 : (this.#counts.get(ref) ?? 0);
  }

  set(ref: number, count: number): void {
    if (count <= 0) {
      // Recorded: the file may hold an earlier count for it.
      if (this.#counts.delete(ref)) this.#append(ref, 0);
      return;
    }
    this.#counts.set(ref, count);
    this.#append(ref, count);
  }

  /** The message is gone (acked, discarded, purged): in memory only, the file keeps it until a rewrite. */
  forget(ref: number): void {
    if (this.#counts.size > 0) this.#counts.delete(ref);
  }

  #append(ref: number, count: number): void {
    if (this.#broken || (this.#records >= COMPACT_MIN_RECORDS && this.#records >= 4 * this.#counts.size)) {
      this.#rewrite();
      return; // the rewrite holds the new count
    }
    if (this.#closed) return; // the queue is closed or deleted: memory only
    const b = this.#buf;
    b.writeDoubleLE(ref, 0);
    b.writeUInt32LE(count, 8);
    b.writeUInt32LE(crc32c(b, 0, 12), 12);
    try {
      if (this.#fd < 0) this.#fd = openSync(this.#path, 'a');
      writevAtSync(this.#fd, [b], this.#records * RECORD);
      this.#records++;
    } catch {
      // A count that cannot be written only grants extra deliveries after a restart; the
      // requeue itself must not fail for it. A torn record may be left: rewrite next time.
      this.#broken = true;
    }
  }

  /** The live entries into a fresh file (temp + rename, so a crash leaves one whole file). */
  #rewrite(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    if (this.#closed) return;
    const out = Buffer.alloc(this.#counts.size * RECORD);
    let p = 0;
    for (const [ref, n] of this.#counts) {
      out.writeDoubleLE(ref, p);
      out.writeUInt32LE(n, p + 8);
      out.writeUInt32LE(crc32c(out, p, p + 12), p + 12);
      p += RECORD;
    }
    const tmp = `${this.#path}.tmp`;
    try {
      writeFileSync(tmp, out);
      renameSync(tmp, this.#path);
      this.#records = this.#counts.size;
      this.#broken = false;
    } catch {
      this.#broken = true; // try again at the next append
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}

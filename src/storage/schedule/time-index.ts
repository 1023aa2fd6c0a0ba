/**
 * The on-disk time index of a schedule: one bucket file per `bucketMs` of dueAt
 * (`<log dir>/time/<start>.tix`, format in time-bucket.ts), the in-memory TimeBucket of each,
 * their starts in order, and a small cache of open descriptors. Bucket files are derived state
 * (see file-schedule-store.ts): written in the commit round, never fsynced, checked against
 * the log on open (schedule-recovery.ts).
 */
import { unlink } from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import { closeFile, openFile, readAt, writevAt } from '../io.js';
import { BUCKET_ENTRY, BUCKET_HEADER, bucketFileName, encodeBucketHeader, TimeBucket } from './time-bucket.js';

/** Bytes read per call from a bucket (or done) file: a whole number of bucket entries. */
export const READ_CHUNK = 1024 * 1024 - ((1024 * 1024) % BUCKET_ENTRY);
const MAX_OPEN_BUCKETS = 32;
const NEW_FILE = FS.O_WRONLY | FS.O_CREAT | FS.O_TRUNC;
const APPEND_FILE = FS.O_WRONLY | FS.O_CREAT;

export class TimeIndex {
  readonly dir: string;
  readonly bucketMs: number;
  #buckets = new Map<number, TimeBucket>();
  /** Bucket starts, ascending. */
  #starts: number[] = [];
  #dirty = new Set<TimeBucket>();
  /** Open bucket files by start, least recently used first. */
  #fds = new Map<number, number>();

  constructor(dir: string, bucketMs: number) {
    this.dir = dir;
    this.bucketMs = bucketMs;
  }

  /** Bucket starts, ascending. */
  get starts(): readonly number[] {
    return this.#starts;
  }

  get size(): number {
    return this.#buckets.size;
  }

  get hasDirty(): boolean {
    return this.#dirty.size > 0;
  }

  bucketStart(dueAt: number): number {
    return Math.floor(dueAt / this.bucketMs) * this.bucketMs;
  }

  get(start: number): TimeBucket | undefined {
    return this.#buckets.get(start);
  }

  /** The bucket beginning at `start`, created (in memory) if there is none. */
  bucket(start: number): TimeBucket {
    let b = this.#buckets.get(start);
    if (b === undefined) {
      b = new TimeBucket(start);
      this.#buckets.set(start, b);
      const i = this.firstIndexAtOrAfter(start);
      this.#starts.splice(i, 0, start);
    }
    return b;
  }

  firstIndexAtOrAfter(t: number): number {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Appends an entry to its bucket; it reaches the file in the next round. */
  append(dueAt: number, id: number, gid: number): void {
    const b = this.bucket(this.bucketStart(dueAt));
    b.append(dueAt, id, gid);
    this.#dirty.add(b);
  }

  /** Hands the entries appended since the last round to a round (which passes them to write()). */
  detachDirty(): Array<[TimeBucket, Buffer]> {
    const buckets: Array<[TimeBucket, Buffer]> = [];
    for (const b of this.#dirty) {
      const data = b.detachPending();
      if (data !== null) buckets.push([b, data]);
    }
    this.#dirty.clear();
    return buckets;
  }

  async write(b: TimeBucket, data: Buffer): Promise<void> {
    const fd = await this.#fd(b);
    if (!b.created) {
      await writevAt(fd, [encodeBucketHeader(b.start), data], 0);
      b.created = true;
    } else {
      await writevAt(fd, [data], BUCKET_HEADER + b.fileBytes);
    }
    b.fileBytes += data.length;
    b.inRound = null;
  }

  async #fd(b: TimeBucket): Promise<number> {
    const fd = this.#fds.get(b.start);
    if (fd !== undefined) {
      // Most recently used last.
      this.#fds.delete(b.start);
      this.#fds.set(b.start, fd);
      return fd;
    }
    if (this.#fds.size >= MAX_OPEN_BUCKETS) {
      const [oldStart, oldFd] = this.#fds.entries().next().value as [number, number];
      this.#fds.delete(oldStart);
      await closeFile(oldFd);
    }
    const nfd = await openFile(`${this.dir}/${bucketFileName(b.start)}`, b.created ? APPEND_FILE : NEW_FILE);
    this.#fds.set(b.start, nfd);
    return nfd;
  }

  /** Reads entries [BUCKET_HEADER, end) of a bucket file in chunks. A missing file reads as empty. */
  async read(start: number, end: number, each: (buf: Buffer, n: number) => void): Promise<void> {
    let fd: number;
    try {
      fd = await openFile(`${this.dir}/${bucketFileName(start)}`, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    try {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(BUCKET_ENTRY, end - BUCKET_HEADER)));
      for (let pos = BUCKET_HEADER; pos < end; ) {
        const want = Math.min(buf.length, end - pos);
        const n = await readAt(fd, buf, 0, want, pos);
        if (n <= 0) break;
        const whole = n - (n % BUCKET_ENTRY);
        each(buf, whole);
        if (whole === 0) break;
        pos += whole;
      }
    } finally {
      await closeFile(fd);
    }
  }

  /** Forgets a bucket and deletes its file. */
  async delete(b: TimeBucket): Promise<void> {
    this.#buckets.delete(b.start);
    this.#starts.splice(this.firstIndexAtOrAfter(b.start), 1);
    const fd = this.#fds.get(b.start);
    if (fd !== undefined) {
      this.#fds.delete(b.start);
      await closeFile(fd);
    }
    await unlink(`${this.dir}/${bucketFileName(b.start)}`).catch(() => undefined);
  }

  async close(): Promise<void> {
    for (const fd of this.#fds.values()) await closeFile(fd);
    this.#fds.clear();
  }
}

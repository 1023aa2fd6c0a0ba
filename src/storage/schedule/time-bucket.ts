/**
 * The on-disk time index of a schedule: one bucket file per window of `bucketMs` of dueAt
 * (an hour by default), appended as entries are added. It is derived data: every entry it
 * names is also in the schedule log, so a missing, torn or corrupt bucket file costs a read
 * of the log on open (schedule-recovery.ts rebuilds what is missing), never an entry.
 *
 * Bucket file layout (little-endian), named `<bucket start ms, 20 digits>.tix`:
 *   u32 magic BUCKET_MAGIC | u16 version | u16 entry size | u64 bucket start   (BUCKET_HEADER)
 *   entries, BUCKET_ENTRY bytes each:
 *     f64 dueAt | u64 id (offset in the schedule log) | u32 group id | u32 crc32c of bytes [0, 20)
 * Fixed-size entries with their own CRC: a torn tail is cut at the last whole entry and a
 * damaged entry in the middle is skipped (and its id read back from the log).
 *
 * Group names file `groups` (the group ids used above; append-only):
 *   u32 crc32c of the rest | u32 group id | u16 name length | name (UTF-8)
 */
import { crc32cJs } from '../../common/mod.js';
import { readU64, writeU64 } from '../log/record.js';

export const BUCKET_MAGIC = 0x534c5442; // "SLTB"
export const BUCKET_VERSION = 1;
export const BUCKET_HEADER = 16;
export const BUCKET_ENTRY = 24;
/** Directory (inside the schedule log's directory) holding the time index. */
export const TIME_INDEX_DIR = 'time';
/** Group names file inside TIME_INDEX_DIR. */
export const GROUPS_FILE = 'groups';

/** Bucket files are named by the start of their window, 20 digits so that names sort numerically. */
export function bucketFileName(start: number): string {
  return `${String(start).padStart(20, '0')}.tix`;
}
export function parseBucketFileName(name: string): number | null {
  const m = /^(\d{20})\.tix$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function encodeBucketHeader(start: number): Buffer {
  const b = Buffer.alloc(BUCKET_HEADER);
  b.writeUInt32LE(BUCKET_MAGIC, 0);
  b.writeUInt16LE(BUCKET_VERSION, 4);
  b.writeUInt16LE(BUCKET_ENTRY, 6);
  writeU64(b, 8, start);
  return b;
}

/** True when `b` starts with a valid header for the bucket at `start`. */
export function checkBucketHeader(b: Buffer, start: number): boolean {
  return (
    b.length >= BUCKET_HEADER &&
    b.readUInt32LE(0) === BUCKET_MAGIC &&
    b.readUInt16LE(4) === BUCKET_VERSION &&
    b.readUInt16LE(6) === BUCKET_ENTRY &&
    readU64(b, 8) === start
  );
}

export function encodeBucketEntry(buf: Buffer, pos: number, dueAt: number, id: number, groupId: number): void {
  buf.writeDoubleLE(dueAt, pos);
  writeU64(buf, pos + 8, id);
  buf.writeUInt32LE(groupId, pos + 16);
  buf.writeUInt32LE(crc32cJs(buf, pos, pos + 20), pos + 20);
}

export function bucketEntryValid(buf: Buffer, pos: number): boolean {
  return crc32cJs(buf, pos, pos + 20) === buf.readUInt32LE(pos + 20);
}
export function entryDueAt(buf: Buffer, pos: number): number {
  return buf.readDoubleLE(pos);
}
export function entryId(buf: Buffer, pos: number): number {
  return readU64(buf, pos + 8);
}
export function entryGroup(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos + 16);
}

export function encodeGroupRecord(id: number, name: Buffer): Buffer {
  const b = Buffer.allocUnsafe(10 + name.length);
  b.writeUInt32LE(id, 4);
  b.writeUInt16LE(name.length, 8);
  name.copy(b, 10);
  b.writeUInt32LE(crc32cJs(b, 4, b.length), 0);
  return b;
}

/**
 * Parses a groups file. Returns the names by id and the length of the valid prefix (a torn
 * or corrupt tail is cut there).
 */
export function parseGroups(data: Buffer): { names: Map<number, string>; validBytes: number } {
  const names = new Map<number, string>();
  let p = 0;
  while (p + 10 <= data.length) {
    const len = data.readUInt16LE(p + 8);
    if (p + 10 + len > data.length) break;
    if (crc32cJs(data, p + 4, p + 10 + len) !== data.readUInt32LE(p)) break;
    names.set(data.readUInt32LE(p + 4), data.toString('utf8', p + 10, p + 10 + len));
    p += 10 + len;
  }
  return { names, validBytes: p };
}

/**
 * One bucket file's state in memory: how much of it is written, and the entries waiting for
 * the next commit round (`pending`) or being written by the current one (`inRound`). Bytes
 * count as written only once their write has completed, so a reader that takes
 * [0, fileBytes) from the file plus `inRound` and `pending` from memory sees every entry once.
 */
export class TimeBucket {
  readonly start: number;
  /** Entry bytes in the file (after the header) whose write has completed. */
  fileBytes = 0;
  /** The file exists (it has a header). */
  created = false;
  pending: Buffer | null = null;
  pendingLen = 0;
  inRound: Buffer | null = null;
  /** Set while takeDue() reads the file into the heap: it must not be deleted meanwhile. */
  loading = false;

  constructor(start: number) {
    this.start = start;
  }

  append(dueAt: number, id: number, groupId: number): void {
    if (this.pending === null || this.pending.length - this.pendingLen < BUCKET_ENTRY) {
      const grown = Buffer.allocUnsafe(Math.max(BUCKET_ENTRY * 64, (this.pending?.length ?? 0) * 2));
      if (this.pending !== null) this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    encodeBucketEntry(this.pending, this.pendingLen, dueAt, id, groupId);
    this.pendingLen += BUCKET_ENTRY;
  }

  /** Moves pending entries to the round; returns their bytes, or null if there are none. */
  detachPending(): Buffer | null {
    if (this.pendingLen === 0) return null;
    this.inRound = this.pending!.subarray(0, this.pendingLen);
    this.pending = null;
    this.pendingLen = 0;
    return this.inRound;
  }

  /** Entries held in memory only (being written or waiting): views, in append order. */
  memoryEntries(): Buffer[] {
    const out: Buffer[] = [];
    if (this.inRound !== null) out.push(this.inRound);
    if (this.pendingLen > 0) out.push(this.pending!.subarray(0, this.pendingLen));
    return out;
  }

  get busy(): boolean {
    return this.loading || this.inRound !== null || this.pendingLen > 0;
  }
}

/**
 * One segment file of a SegmentLog.
 *
 * File layout (little-endian):
 *   u32 magic SEGMENT_MAGIC | u16 version | u16 reserved | u64 base offset      (SEGMENT_HEADER bytes)
 *   records (record.ts), back to back
 *
 * A sealed segment has a companion `.idx` file, written only after the segment was fsynced, so
 * its presence means "this segment is complete and durable": recovery scans only segments
 * without one (normally just the last). The index is sparse: one (relative offset, position)
 * entry every `indexInterval` bytes.
 */
import { unlink, writeFile, readFile } from 'node:fs/promises';
import { fstat as fstatCb, type Stats } from 'node:fs';
import { crc32c, CorruptSegment } from '../../common/mod.js';
import { openFile, readAt, closeFile } from '../io.js';
import { checkRecord, RecordCheck, RecordType, recordLength, recordOffset, recordTimestamp, recordType, readU64, writeU64 } from './record.js';

const fstat = (fd: number): Promise<Stats> => new Promise((res, rej) => fstatCb(fd, (e, st) => (e ? rej(e) : res(st))));

export const SEGMENT_MAGIC = 0x534c5347; // "SLSG"
export const SEGMENT_VERSION = 1;
export const SEGMENT_HEADER = 16;
const INDEX_MAGIC = 0x534c4958; // "SLIX"
const INDEX_HEADER = 40;

/** Segment files are named by their base offset, 20 digits so that names sort numerically. */
export function segmentFileName(base: number): string {
  return `${String(base).padStart(20, '0')}.seg`;
}
export function parseSegmentFileName(name: string): number | null {
  const m = /^(\d{20})\.seg$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function encodeSegmentHeader(base: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER);
  b.writeUInt32LE(SEGMENT_MAGIC, 0);
  b.writeUInt16LE(SEGMENT_VERSION, 4);
  writeU64(b, 8, base);
  return b;
}

export interface ScanResult {
  /** Byte position after the last valid record. */
  end: number;
  records: number;
  nextOffset: number;
  lastTs: number;
  /** Why the scan stopped before the end of the file, if it did. */
  problem: string | null;
  /** Offsets of the ELIDED records found (record.ts). */
  elided: number[];
}

export class Segment {
  readonly base: number;
  readonly path: string;
  /** Bytes of the records placed in this segment (positioned), written or waiting for their round. */
  size = SEGMENT_HEADER;
  /**
   * Bytes of records assigned to this segment but not placed yet (held, segment-log.ts); an
   * upper bound, since an elided record shrinks to its header when it is placed.
   */
  reserved = 0;
  /** The file does not exist yet: the first chunk written to it creates it. */
  pendingCreate = false;
  /** The largest record assigned to it in this process (sizes its roll, segment-log.ts). */
  largestRecord = 0;
  /** Offset after the last record assigned to this segment. */
  nextOffset: number;
  records = 0;
  lastTs = 0;
  sealed = false;
  /** A read/write descriptor; -1 until first needed. */
  fd = -1;
  /** Written (page cache) since the last fsync. */
  dirty = false;
  #idxRel: Uint32Array = new Uint32Array(16);
  #idxPos: Uint32Array = new Uint32Array(16);
  #idxCount = 0;
  #lastIndexed = 0;
  #indexLoaded = true;
  #opening: Promise<number> | null = null;
  /** Operations using `fd` right now (reads, syncs); close() waits for them. */
  #users = 0;
  #idle: Array<() => void> = [];
  /** Set by removeFiles(): the files are gone. */
  removed = false;
  readonly indexInterval: number;

  constructor(dirPath: string, base: number, indexInterval: number) {
    this.base = base;
    this.nextOffset = base;
    this.path = `${dirPath}/${segmentFileName(base)}`;
    this.indexInterval = indexInterval;
  }

  get indexPath(): string {
    return this.path.replace(/\.seg$/, '.idx');
  }

  /** Records a record at `pos` (called in offset order): assign() and place() at once. */
  noteRecord(offset: number, pos: number, len: number, ts: number): void {
    this.assign(offset);
    this.place(offset, pos, len, ts);
  }

  /** The record `offset` belongs to this segment (its position may come later, see place()). */
  assign(offset: number): void {
    this.records++;
    this.nextOffset = offset + 1;
  }

  /** The record `offset`, assigned earlier, sits at `pos` (called in offset order). */
  place(offset: number, pos: number, len: number, ts: number): void {
    if (this.#idxCount === 0 || pos - this.#lastIndexed >= this.indexInterval) {
      this.#addIndex(offset - this.base, pos);
      this.#lastIndexed = pos;
    }
    this.size = pos + len;
    if (ts > this.lastTs) this.lastTs = ts;
  }

  #addIndex(rel: number, pos: number): void {
    if (this.#idxCount === this.#idxRel.length) {
      const r = new Uint32Array(this.#idxCount * 2);
      r.set(this.#idxRel);
      this.#idxRel = r;
      const p = new Uint32Array(this.#idxCount * 2);
      p.set(this.#idxPos);
      this.#idxPos = p;
    }
    this.#idxRel[this.#idxCount] = rel;
    this.#idxPos[this.#idxCount] = pos;
    this.#idxCount++;
  }

  /** Position of the last indexed record at or before `offset` (the scan for it starts there). */
  async floorPosition(offset: number): Promise<number> {
    if (!this.#indexLoaded) await this.loadIndex();
    return this.floorPositionSync(offset);
  }

  /** floorPosition() without waiting: -1 while the index is not loaded. */
  floorPositionSync(offset: number): number {
    if (!this.#indexLoaded) return -1;
    const rel = offset - this.base;
    let lo = 0;
    let hi = this.#idxCount - 1;
    if (hi < 0 || this.#idxRel[0]! > rel) return SEGMENT_HEADER;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#idxRel[mid]! <= rel) lo = mid;
      else hi = mid - 1;
    }
    return this.#idxPos[lo]!;
  }

  async ensureFd(): Promise<number> {
    if (this.fd >= 0) return this.fd;
    if (this.#opening === null) {
      this.#opening = openFile(this.path, 'r+').then((fd) => {
        this.fd = fd;
        this.#opening = null;
        return fd;
      });
    }
    return this.#opening;
  }

  /**
   * Runs `fn` with the descriptor held open: close() (sealing, retention, reclamation) waits
   * until it is done, so a read never lands on a closed descriptor or on another file that
   * reused its number.
   */
  async use<T>(fn: (fd: number) => Promise<T>): Promise<T> {
    this.#users++;
    try {
      return await fn(await this.ensureFd());
    } finally {
      if (--this.#users === 0 && this.#idle.length > 0) for (const w of this.#idle.splice(0)) w();
    }
  }

  async close(): Promise<void> {
    if (this.#opening) await this.#opening.catch(() => undefined);
    while (this.#users > 0) await new Promise<void>((r) => this.#idle.push(r));
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      await closeFile(fd);
    }
  }

  /** A sealed segment opened from disk: its counts come from the .idx file, loaded lazily. */
  static sealedFromIndexHeader(dirPath: string, base: number, indexInterval: number, hdr: Buffer): Segment {
    const s = new Segment(dirPath, base, indexInterval);
    s.sealed = true;
    s.records = hdr.readUInt32LE(12);
    s.nextOffset = readU64(hdr, 16);
    s.lastTs = readU64(hdr, 24);
    s.size = hdr.readUInt32LE(32);
    s.#indexLoaded = false;
    return s;
  }

  /** Reads and checks the .idx file; returns its header, or null if missing or invalid. */
  static async readIndexHeader(indexPath: string, base: number): Promise<Buffer | null> {
    let data: Buffer;
    try {
      data = await readFile(indexPath);
    } catch {
      return null;
    }
    if (data.length < INDEX_HEADER || data.readUInt32LE(0) !== INDEX_MAGIC) return null;
    const count = data.readUInt32LE(8);
    if (data.length !== INDEX_HEADER + count * 8) return null;
    if (crc32c(data, 8, data.length) !== data.readUInt32LE(4)) return null;
    if (readU64(data, 16) < base) return null;
    return data;
  }

  async loadIndex(): Promise<void> {
    const data = await Segment.readIndexHeader(this.indexPath, this.base);
    if (data === null) throw new CorruptSegment(this.indexPath, 0, 'index file missing or invalid');
    const count = data.readUInt32LE(8);
    this.#idxRel = new Uint32Array(Math.max(16, count));
    this.#idxPos = new Uint32Array(Math.max(16, count));
    for (let i = 0; i < count; i++) {
      this.#idxRel[i] = data.readUInt32LE(INDEX_HEADER + i * 8);
      this.#idxPos[i] = data.readUInt32LE(INDEX_HEADER + i * 8 + 4);
    }
    this.#idxCount = count;
    this.#indexLoaded = true;
  }

  /** Writes the .idx file. Call only after the segment itself is durable (see file comment). */
  async writeIndex(): Promise<void> {
    const data = Buffer.alloc(INDEX_HEADER + this.#idxCount * 8);
    data.writeUInt32LE(INDEX_MAGIC, 0);
    data.writeUInt32LE(this.#idxCount, 8);
    data.writeUInt32LE(this.records, 12);
    writeU64(data, 16, this.nextOffset);
    writeU64(data, 24, this.lastTs);
    data.writeUInt32LE(this.size, 32);
    for (let i = 0; i < this.#idxCount; i++) {
      data.writeUInt32LE(this.#idxRel[i]!, INDEX_HEADER + i * 8);
      data.writeUInt32LE(this.#idxPos[i]!, INDEX_HEADER + i * 8 + 4);
    }
    data.writeUInt32LE(crc32c(data, 8, data.length), 4);
    await writeFile(this.indexPath, data);
  }

  async removeFiles(): Promise<void> {
    this.removed = true;
    await this.close();
    await unlink(this.path).catch(() => undefined);
    await unlink(this.indexPath).catch(() => undefined);
  }

  /** Checks the segment header (magic, format version, base offset); throws CorruptSegment. */
  static checkHeader(path: string, base: number, header: Buffer, n: number): void {
    if (n < SEGMENT_HEADER || header.readUInt32LE(0) !== SEGMENT_MAGIC) throw new CorruptSegment(path, 0, 'bad segment magic');
    if (header.readUInt16LE(4) !== SEGMENT_VERSION) {
      throw new CorruptSegment(path, 0, `unsupported segment version ${header.readUInt16LE(4)}`);
    }
    if (readU64(header, 8) !== base) throw new CorruptSegment(path, 0, 'base offset does not match the file name');
  }

  /**
   * Reads and checks the header of a segment file that is not open (one trusted by its index);
   * returns the file's size.
   */
  static async verifyHeader(path: string, base: number): Promise<number> {
    const fd = await openFile(path, 'r');
    try {
      const header = Buffer.alloc(SEGMENT_HEADER);
      Segment.checkHeader(path, base, header, await readAt(fd, header, 0, SEGMENT_HEADER, 0));
      return (await fstat(fd)).size;
    } finally {
      await closeFile(fd);
    }
  }

  /**
   * Validates every record from the header on, rebuilding the index as it goes, and stops at
   * the first record that is torn or corrupt. The caller truncates the file at `end`.
   */
  async scan(fileSize: number): Promise<ScanResult> {
    const fd = await this.ensureFd();
    const header = Buffer.alloc(SEGMENT_HEADER);
    Segment.checkHeader(this.path, this.base, header, await readAt(fd, header, 0, SEGMENT_HEADER, 0));
    this.#idxCount = 0;
    this.records = 0;
    this.nextOffset = this.base;
    this.size = SEGMENT_HEADER;
    let buf = Buffer.allocUnsafe(1 << 20);
    let bufStart = SEGMENT_HEADER; // file position of buf[0]
    let bufEnd = 0; // valid bytes in buf
    let pos = SEGMENT_HEADER;
    let problem: string | null = null;
    const elided: number[] = [];
    for (;;) {
      const rel = pos - bufStart;
      const check = checkRecord(buf, rel, bufEnd);
      if (check === RecordCheck.SHORT) {
        if (bufStart + bufEnd >= fileSize) {
          if (pos < fileSize) problem = 'torn record at the tail';
          break;
        }
        // Move the partial record to the front and read more, growing for records over 1 MiB.
        const keep = bufEnd - rel;
        const need = keep >= 4 ? 4 + buf.readUInt32LE(rel) : 0;
        if (pos + need > fileSize) {
          // A length running past the end of the file: a torn or garbage tail. Stop here rather
          // than allocate up to MAX_RECORD_BYTES for bytes that are not there.
          problem = 'torn record at the tail';
          break;
        }
        const next = need > buf.length ? Buffer.allocUnsafe(need) : buf;
        buf.copy(next, 0, rel, bufEnd);
        buf = next;
        bufStart = pos;
        bufEnd = keep;
        const want = Math.min(buf.length - bufEnd, fileSize - (bufStart + bufEnd));
        const got = await readAt(fd, buf, bufEnd, want, bufStart + bufEnd);
        bufEnd += got;
        if (got === 0) {
          if (pos < fileSize) problem = 'torn record at the tail';
          break;
        }
        continue;
      }
      if (check === RecordCheck.END) {
        if (pos < fileSize) problem = 'zero-filled tail';
        break;
      }
      if (check !== RecordCheck.OK) {
        problem = check === RecordCheck.BAD_CRC ? 'CRC mismatch' : check === RecordCheck.BAD_MAGIC ? 'bad record magic' : 'bad record length';
        break;
      }
      const offset = recordOffset(buf, rel);
      if (offset !== this.nextOffset) {
        problem = `offset ${offset} out of sequence (expected ${this.nextOffset})`;
        break;
      }
      const len = recordLength(buf, rel);
      this.noteRecord(offset, pos, len, recordTimestamp(buf, rel));
      if (recordType(buf, rel) === RecordType.ELIDED) elided.push(offset);
      pos += len;
    }
    return { end: pos, records: this.records, nextOffset: this.nextOffset, lastTs: this.lastTs, problem, elided };
  }
}

/**
 * An append-only log of records in fixed-size segment files (segment.ts), the one storage
 * primitive: queue logs, partition logs and the schedule log are all SegmentLogs.
 *
 * append() is synchronous: it assigns the next offset and encodes the record into a pending
 * buffer, and the node's GroupCommitter writes it in its next round. `flushed()` resolves when
 * everything appended so far is stored according to the log's durability policy.
 */
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { CorruptSegment, SluiceError } from '../../common/mod.js';
import { datasync, readAt, readAtSync, truncateFd, writevAt, writevAtSync, openFile, fsyncDir } from '../io.js';
import type { Durability } from '../durability/policy.js';
import type { GroupCommitter, RoundParticipant } from '../durability/group-commit.js';
import type { JournalBatch } from '../durability/journal.js';
import {
  checkRecord,
  encodeRecord,
  RecordCheck,
  RecordType,
  recordFlags,
  recordLength,
  recordOffset,
  recordPayload,
  recordTimestamp,
  recordType,
  RECORD_HEADER,
  MAX_RECORD_BYTES,
} from './record.js';
import { encodeSegmentHeader, parseSegmentFileName, Segment, SEGMENT_HEADER } from './segment.js';

export interface LogOptions {
  /** Target size of a segment file (a single larger record gets a segment of its own). */
  segmentBytes?: number;
  /** Bytes between sparse index entries. */
  indexInterval?: number;
  durability?: Durability;
}

export interface LogRecord {
  offset: number;
  ts: number;
  flags: number;
  type: number;
  payload: Buffer;
}

export interface LogRecoveryReport {
  log: string;
  /** Bytes cut from segment tails that failed validation. */
  truncatedBytes: number;
  /** Segment files that could not be read at all, moved aside with a `.corrupt` suffix. */
  quarantined: string[];
  problems: string[];
  /** Records restored from the journal. */
  replayed: number;
}

export interface RetentionPolicy {
  maxBytes?: number;
  maxAgeMs?: number;
}

const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const SLAB_BYTES = 64 * 1024;
/** Chunks up to this size are written synchronously (page cache only; see io.ts writevAtSync). */
const SYNC_WRITE_MAX = 256 * 1024;

interface PendingChunk {
  seg: Segment;
  /** File position of the chunk's first byte. */
  pos: number;
  bufs: Buffer[];
  bytes: number;
  /** The chunk begins a new segment file, so the header goes first. */
  create: boolean;
}

export class SegmentLog implements RoundParticipant {
  readonly id: number;
  readonly name: string;
  readonly dir: string;
  readonly durability: Durability;
  readonly segmentBytes: number;
  readonly indexInterval: number;
  #committer: GroupCommitter;
  #segments: Segment[] = [];
  #nextOffset = 0;
  /** Every record below this offset has been written to its file. */
  #writtenOffset = 0;
  #pending: PendingChunk[] = [];
  #inRound: PendingChunk[] = [];
  #roundEndOffset = 0;
  #slab: Buffer = Buffer.allocUnsafe(SLAB_BYTES);
  #slabPos = 0;
  #slabChunkStart = 0;
  /** Readers waiting for `offset` to be written. */
  #tailWaiters: Array<{ offset: number; resolve: () => void }> = [];
  #sealQueue: Segment[] = [];
  #sealing: Promise<void> | null = null;
  #closed = false;
  #failed: Error | null = null;

  constructor(id: number, name: string, dir: string, committer: GroupCommitter, opts: LogOptions = {}) {
    this.id = id;
    this.name = name;
    this.dir = dir;
    this.#committer = committer;
    this.durability = opts.durability ?? 'fsync';
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.indexInterval = opts.indexInterval ?? 4096;
  }

  /** First offset still stored (older ones were removed by retention or reclamation). */
  get startOffset(): number {
    return this.#segments.length > 0 ? this.#segments[0]!.base : this.#nextOffset;
  }
  get nextOffset(): number {
    return this.#nextOffset;
  }
  /** Records below this offset are in their files (readable). */
  get writtenOffset(): number {
    return this.#writtenOffset;
  }
  get sizeBytes(): number {
    let n = 0;
    for (const s of this.#segments) n += s.size;
    return n;
  }
  get segmentCount(): number {
    return this.#segments.length;
  }
  /** Base offsets of the segments, oldest first. */
  segmentBases(): number[] {
    return this.#segments.map((s) => s.base);
  }
  /** [base, nextOffset) of the segment holding `offset`, or null. */
  segmentRange(offset: number): { base: number; end: number; sealed: boolean } | null {
    const s = this.#find(offset);
    return s ? { base: s.base, end: s.nextOffset, sealed: s.sealed } : null;
  }

  /**
   * Opens (or creates) the log in `dir`: scans segments without a valid index (normally only
   * the last) and truncates each at its first bad record. `trustLastIndex` is set after a
   * clean shutdown, when the last segment's index was written at close.
   */
  async open(trustLastIndex: boolean): Promise<LogRecoveryReport> {
    const report: LogRecoveryReport = { log: this.name, truncatedBytes: 0, quarantined: [], problems: [], replayed: 0 };
    const bases: number[] = [];
    for (const n of await readdir(this.dir)) {
      const b = parseSegmentFileName(n);
      if (b !== null) bases.push(b);
    }
    bases.sort((a, b) => a - b);
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i]!;
      const isLast = i === bases.length - 1;
      const seg = await this.#openSegment(base, isLast, trustLastIndex, report);
      if (seg !== null) this.#segments.push(seg);
    }
    const last = this.#segments[this.#segments.length - 1];
    this.#nextOffset = last ? last.nextOffset : 0;
    // An empty trailing segment keeps the offset sequence; without any, a fresh log starts at 0.
    this.#writtenOffset = this.#nextOffset;
    this.#roundEndOffset = this.#nextOffset;
    return report;
  }

  async #openSegment(base: number, isLast: boolean, trustIndex: boolean, report: LogRecoveryReport): Promise<Segment | null> {
    const probe = new Segment(this.dir, base, this.indexInterval);
    const hdr = await Segment.readIndexHeader(probe.indexPath, base);
    // The index vouches for the records, not for the file's format or length: check those too.
    let fileSize = -1;
    if (hdr !== null && (!isLast || trustIndex)) {
      try {
        fileSize = await Segment.verifyHeader(probe.path, base);
      } catch (e) {
        if (!(e instanceof CorruptSegment)) throw e;
        return this.#quarantine(probe, e, report);
      }
    }
    if (hdr !== null && (!isLast || trustIndex) && fileSize === hdr.readUInt32LE(32)) {
      const seg = Segment.sealedFromIndexHeader(this.dir, base, this.indexInterval, hdr);
      if (isLast) {
        // It will be appended to again, so its index stops describing it.
        await seg.loadIndex();
        seg.sealed = false;
        await rm(seg.indexPath, { force: true });
      }
      return seg;
    }
    if (hdr !== null) await rm(probe.indexPath, { force: true }); // it no longer describes the file
    fileSize = (await stat(probe.path)).size;
    try {
      const r = await probe.scan(fileSize);
      if (r.end < fileSize) {
        report.truncatedBytes += fileSize - r.end;
        report.problems.push(`${probe.path}: ${r.problem ?? 'bad tail'}; truncated ${fileSize - r.end} bytes at ${r.end}`);
        await truncateFd(probe.fd, r.end);
        await datasync(probe.fd);
      }
      if (!isLast) {
        probe.sealed = true;
        // The index says "complete and durable" (segment.ts), so the data goes to disk first.
        await datasync(probe.fd);
        await probe.writeIndex();
        await probe.close();
      }
      return probe;
    } catch (e) {
      await probe.close();
      if (!(e instanceof CorruptSegment)) throw e;
      return this.#quarantine(probe, e, report);
    }
  }

  /** Moves an unreadable segment aside with a `.corrupt` suffix and reports it. */
  async #quarantine(probe: Segment, e: CorruptSegment, report: LogRecoveryReport): Promise<null> {
    const aside = `${probe.path}.corrupt`;
    await rename(probe.path, aside);
    await rm(probe.indexPath, { force: true });
    report.quarantined.push(aside);
    report.problems.push(e.message);
    return null;
  }

  /** Appends one record; returns its offset. The bytes are written in the next commit round. */
  append(payload: Uint8Array, ts: number = Date.now(), flags = 0, type: number = RecordType.DATA): number {
    if (this.#closed) throw new SluiceError('SLUICE_STORAGE_CLOSED');
    const size = RECORD_HEADER + payload.length;
    if (size > MAX_RECORD_BYTES) throw new SluiceError('SLUICE_STORAGE_RECORD_TOO_LARGE', `record of ${size} bytes`);
    const seg = this.#segmentFor(size);
    if (this.#slab.length - this.#slabPos < size) this.#newSlab(size);
    const offset = this.#nextOffset++;
    const pos = seg.size;
    this.#slabPos = encodeRecord(this.#slab, this.#slabPos, offset, ts, type, flags, payload);
    seg.noteRecord(offset, pos, size, ts);
    this.#committer.markDirty(this);
    return offset;
  }

  /** Resolves when every record appended so far is stored per this log's durability policy. */
  flushed(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.durability === 'none') return Promise.resolve();
    return this.#committer.flushed();
  }

  /** The segment that takes the next record of `size` bytes, rolling when the current is full. */
  #segmentFor(size: number): Segment {
    let seg = this.#segments[this.#segments.length - 1];
    if (seg === undefined || seg.sealed || (seg.records > 0 && seg.size + size > this.segmentBytes)) {
      this.#closeChunk();
      if (seg !== undefined && !seg.sealed) {
        seg.sealed = true;
        this.#sealQueue.push(seg);
      }
      seg = new Segment(this.dir, this.#nextOffset, this.indexInterval);
      this.#segments.push(seg);
      this.#pending.push({ seg, pos: SEGMENT_HEADER, bufs: [], bytes: 0, create: true });
    } else if (this.#pending.length === 0 || this.#pending[this.#pending.length - 1]!.seg !== seg) {
      this.#closeChunk();
      this.#pending.push({ seg, pos: seg.size, bufs: [], bytes: 0, create: false });
    }
    return seg;
  }

  #closeChunk(): void {
    const c = this.#pending[this.#pending.length - 1];
    if (c !== undefined && this.#slabPos > this.#slabChunkStart) {
      const b = this.#slab.subarray(this.#slabChunkStart, this.#slabPos);
      c.bufs.push(b);
      c.bytes += b.length;
    }
    this.#slabChunkStart = this.#slabPos;
  }

  #newSlab(min: number): void {
    this.#closeChunk();
    this.#slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, min));
    this.#slabPos = 0;
    this.#slabChunkStart = 0;
  }

  // RoundParticipant: called by the GroupCommitter.
  needsSync(): boolean {
    return this.durability === 'fsync';
  }

  beginRound(batch: JournalBatch, direct: boolean): Promise<void> | null {
    this.#closeChunk();
    const chunks = this.#pending.filter((c) => c.bytes > 0 || c.create);
    this.#pending = [];
    // The slab's written part now belongs to the round; keep filling the rest of it.
    this.#inRound = chunks;
    this.#roundEndOffset = this.#nextOffset;
    if (chunks.length === 0) return null;
    const sync = this.durability === 'fsync' && direct;
    if (this.durability === 'fsync' && !direct) {
      for (const c of chunks) for (const b of c.bufs) batch.add(this.id, b);
    }
    return this.#writeChunks(chunks, sync);
  }

  async #writeChunks(chunks: PendingChunk[], sync: boolean): Promise<void> {
    // Let the round submit the journal write first: it is the one the round waits on.
    await null;
    // Sequential on purpose: a segment's bytes reach the file before the next segment's, so
    // only the newest segment can have a torn tail after kill -9.
    for (const c of chunks) {
      if (c.create) {
        c.seg.fd = await openFile(c.seg.path, 'w+');
        await fsyncDir(this.dir);
        await writevAt(c.seg.fd, [encodeSegmentHeader(c.seg.base), ...c.bufs], 0);
      } else if (c.bufs.length > 0) {
        const fd = await c.seg.ensureFd();
        if (c.bytes <= SYNC_WRITE_MAX) writevAtSync(fd, c.bufs, c.pos);
        else await writevAt(fd, c.bufs, c.pos);
      }
      c.seg.dirty = true;
    }
    if (sync) for (const c of chunks) await datasync(await c.seg.ensureFd());
  }

  endRound(err: Error | null): void {
    if (err) {
      // The bytes of a failed round may be partly on disk; stop taking appends rather than risk a gap.
      this.#failed = err;
      return;
    }
    this.#inRound = [];
    this.#writtenOffset = this.#roundEndOffset;
    if (this.#sealQueue.length > 0 && this.#sealing === null) {
      this.#sealing = this.#sealSegments().finally(() => {
        this.#sealing = null;
      });
    }
    if (this.#tailWaiters.length > 0) {
      // Only the readers whose offset is now written: a record appended after this round
      // began is written by a later one.
      const ready = this.#tailWaiters.filter((w) => w.offset < this.#writtenOffset);
      if (ready.length > 0) {
        this.#tailWaiters = this.#tailWaiters.filter((w) => w.offset >= this.#writtenOffset);
        for (const w of ready) w.resolve();
      }
    }
  }

  /** fsyncs full segments in the background, then writes their index (see segment.ts). */
  async #sealSegments(): Promise<void> {
    for (;;) {
      const ready = this.#sealQueue.filter((s) => s.nextOffset <= this.#writtenOffset);
      if (ready.length === 0) return;
      this.#sealQueue = this.#sealQueue.filter((s) => !ready.includes(s));
      for (const s of ready) {
        if (s.removed) continue;
        try {
          // Inside use(): removeFiles() waits for it, so it cannot write an index for a
          // segment deleted meanwhile, and no reader loses the descriptor under it.
          await s.use(async (fd) => {
            await datasync(fd);
            s.dirty = false;
            await s.writeIndex();
          });
          await s.close();
        } catch {
          // Removed meanwhile (retention or reclamation); nothing to seal.
        }
      }
    }
  }

  /** Resolves once `offset` has been written (for readers following the tail). */
  waitForOffset(offset: number): Promise<void> {
    if (offset < this.#writtenOffset) return Promise.resolve();
    return new Promise((resolve) => this.#tailWaiters.push({ offset, resolve }));
  }

  /** fdatasyncs every segment written since the last sync (the checkpoint's half of the job). */
  async syncDirty(): Promise<void> {
    for (const s of this.#segments) {
      if (!s.dirty || s.fd < 0 || s.removed) continue;
      s.dirty = false;
      try {
        await s.use(datasync);
      } catch (e) {
        if (!s.removed) throw e;
      }
    }
  }

  #find(offset: number): Segment | null {
    const segs = this.#segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = segs[mid]!;
      if (offset < s.base) hi = mid - 1;
      else if (offset >= s.nextOffset) lo = mid + 1;
      else return s;
    }
    return null;
  }

  /** Reads the record at `offset`, or null if it is not stored (removed, or not yet appended). */
  async read(offset: number): Promise<LogRecord | null> {
    const recs = await this.readBatch(offset, 1, 1);
    return recs.length > 0 && recs[0]!.offset === offset ? recs[0]! : null;
  }

  /**
   * Reads records from `offset` on, up to `maxBytes` of record data (at least one record) and
   * `maxRecords`, without crossing a segment. Payloads are views of one read buffer. Waits for
   * records that are appended but not yet written.
   */
  async readBatch(offset: number, maxBytes: number, maxRecords = Number.MAX_SAFE_INTEGER): Promise<LogRecord[]> {
    if (offset >= this.#nextOffset) return [];
    if (offset >= this.#writtenOffset) await this.waitForOffset(offset);
    let seg = this.#find(offset);
    if (seg === null) {
      // Removed range: continue at the next stored segment.
      seg = this.#segments.find((s) => s.base > offset) ?? null;
      if (seg === null) return [];
      offset = seg.base;
    }
    const s = seg;
    return s.use((fd) => this.#readFrom(s, fd, offset, maxBytes, maxRecords));
  }

  async #readFrom(seg: Segment, fd: number, offset: number, maxBytes: number, maxRecords: number): Promise<LogRecord[]> {
    let pos = await seg.floorPosition(offset);
    const limit = Math.min(seg.size, this.#writtenEndOf(seg));
    const out: LogRecord[] = [];
    let want = Math.min(Math.max(maxBytes, 4096) + (offset > seg.base ? this.indexInterval : 0), limit - pos);
    while (out.length < maxRecords && pos < limit) {
      const buf = Buffer.allocUnsafe(Math.max(want, RECORD_HEADER));
      const n = await readAt(fd, buf, 0, Math.min(buf.length, limit - pos), pos);
      let p = 0;
      let progressed = false;
      let taken = 0;
      while (p < n && out.length < maxRecords) {
        const check = checkRecord(buf, p, n);
        if (check === RecordCheck.SHORT) break;
        if (check !== RecordCheck.OK) throw new CorruptSegment(seg.path, pos + p, 'record failed validation on read');
        const len = recordLength(buf, p);
        const off = recordOffset(buf, p);
        if (off >= offset) {
          if (taken > 0 && taken + len > maxBytes) return out;
          out.push({ offset: off, ts: recordTimestamp(buf, p), flags: recordFlags(buf, p), type: recordType(buf, p), payload: recordPayload(buf, p) });
          taken += len;
        }
        p += len;
        progressed = true;
      }
      if (out.length > 0 && (taken >= maxBytes || out.length >= maxRecords)) return out;
      if (!progressed) {
        // One record larger than the buffer: read exactly it.
        const len = buf.readUInt32LE(p) + 4;
        want = len;
        continue;
      }
      pos += p;
      if (out.length > 0) return out;
      want = Math.max(maxBytes, 4096);
    }
    return out;
  }

  /**
   * Reads the record at `offset` without leaving the thread, when that is safe and cheap: the
   * record is written, its segment's index is in memory and its descriptor open (a segment
   * whose fd is open now cannot be closed before this returns). The payload is a view of
   * `scratch` (or of a larger buffer when the record does not fit), valid until the next call.
   * Returns null when the record is not stored, undefined when the caller must use read().
   */
  readSync(offset: number, scratch: Buffer): LogRecord | null | undefined {
    if (offset >= this.#writtenOffset) return offset >= this.#nextOffset ? null : undefined;
    const seg = this.#find(offset);
    if (seg === null) return null;
    if (seg.fd < 0 || seg.removed) return undefined;
    let pos = seg.floorPositionSync(offset);
    if (pos < 0) return undefined;
    // Every record before `offset` in the segment is written, so the scan never parses unwritten bytes.
    const limit = seg.size;
    let buf = scratch;
    while (pos < limit) {
      const n = readAtSync(seg.fd, buf, 0, Math.min(buf.length, limit - pos), pos);
      let p = 0;
      for (;;) {
        const check = checkRecord(buf, p, n);
        if (check === RecordCheck.SHORT) break;
        if (check !== RecordCheck.OK) throw new CorruptSegment(seg.path, pos + p, 'record failed validation on read');
        const off = recordOffset(buf, p);
        if (off === offset) {
          return { offset: off, ts: recordTimestamp(buf, p), flags: recordFlags(buf, p), type: recordType(buf, p), payload: recordPayload(buf, p) };
        }
        if (off > offset) return null;
        p += recordLength(buf, p);
      }
      if (p === 0) {
        // The next record is larger than the buffer: read exactly it.
        if (n < 4) return undefined;
        buf = Buffer.allocUnsafe(buf.readUInt32LE(0) + 4);
        continue;
      }
      pos += p;
    }
    return null;
  }

  /** End position of what is written in `seg`: the whole segment unless the round is still writing it. */
  #writtenEndOf(seg: Segment): number {
    if (seg.nextOffset <= this.#writtenOffset) return seg.size;
    // Part of the segment is still pending: only up to the first pending chunk for it.
    for (const c of [...this.#inRound, ...this.#pending]) if (c.seg === seg) return c.create ? SEGMENT_HEADER : c.pos;
    return seg.size;
  }

  /**
   * Deletes whole segments older than the policy allows. Never the segment being written.
   * Returns the number of segments deleted.
   */
  async applyRetention(policy: RetentionPolicy, now: number = Date.now()): Promise<number> {
    let deleted = 0;
    let total = this.sizeBytes;
    while (this.#segments.length > 1) {
      const s = this.#segments[0]!;
      if (!s.sealed || s.nextOffset > this.#writtenOffset) break;
      const overSize = policy.maxBytes !== undefined && total - s.size >= policy.maxBytes;
      const tooOld = policy.maxAgeMs !== undefined && s.lastTs < now - policy.maxAgeMs;
      if (!overSize && !tooOld) break;
      this.#segments.shift();
      this.#sealQueue = this.#sealQueue.filter((x) => x !== s);
      total -= s.size;
      await s.removeFiles();
      deleted++;
    }
    return deleted;
  }

  /** Deletes the sealed, fully written segment starting at `base` (queue reclamation). */
  async removeSegment(base: number): Promise<boolean> {
    const i = this.#segments.findIndex((s) => s.base === base);
    if (i < 0) return false;
    const s = this.#segments[i]!;
    if (!s.sealed || s.nextOffset > this.#writtenOffset || i === this.#segments.length - 1) return false;
    this.#segments.splice(i, 1);
    this.#sealQueue = this.#sealQueue.filter((x) => x !== s);
    await s.removeFiles();
    return true;
  }

  /**
   * Journal replay: puts the records in `bytes` (as the journal holds them) back into the log
   * when they are missing from it, i.e. when they follow the last record it holds. Records
   * the log already has are skipped, so replay is idempotent.
   */
  replay(bytes: Buffer): number {
    let added = 0;
    let p = 0;
    while (p < bytes.length) {
      if (checkRecord(bytes, p, bytes.length) !== RecordCheck.OK) break;
      const len = recordLength(bytes, p);
      const off = recordOffset(bytes, p);
      if (off === this.#nextOffset) {
        this.append(recordPayload(bytes, p), recordTimestamp(bytes, p), recordFlags(bytes, p), recordType(bytes, p));
        added++;
      }
      p += len;
    }
    return added;
  }

  /** Writes the last segment's index so the next open can skip scanning it (clean shutdown). */
  async closeClean(): Promise<void> {
    this.#closed = true;
    if (this.#sealing) await this.#sealing;
    const last = this.#segments[this.#segments.length - 1];
    for (const s of this.#segments) {
      if (s.fd >= 0 && s.dirty) await datasync(s.fd);
      s.dirty = false;
    }
    if (last !== undefined && last.fd >= 0 && last.records > 0) await last.writeIndex();
    for (const s of this.#segments) await s.close();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sealing) await this.#sealing;
    for (const s of this.#segments) await s.close();
  }
}

/**
 * An append-only log of records in segment files (segment.ts), the one storage primitive: queue
 * logs, partition logs and the schedule log are all SegmentLogs.
 *
 * append() is synchronous: it assigns the next offset and encodes the record into a pending
 * buffer, and the node's GroupCommitter writes it in its next round. `flushed()` resolves when
 * everything appended so far is stored according to the log's durability policy.
 *
 * Segments roll at `segmentBytes`, or with `minRecordsPerSegment` (queue logs) later for
 * large records: a segment then takes at least that many records of the size being appended
 * (a roll costs a create, a directory fsync, a seal and, for a queue, an ack file and a delete).
 *
 * Held records (queue logs): appendRetained() writes a payload of RETAIN_MIN_BYTES or more from
 * the caller's buffer (a header in the slab, the payload as its own writev entry) instead of
 * copying it. With a write gate set (setWriteGate, FileQueueStore), such a record is also left
 * unplaced until a round starts, and the gate then says, oldest first, whether to write it, to
 * elide it (its owner released it: an acked message; an ELIDED record of header only takes its
 * offset, record.ts), or to hold it for a later round (a consumer has it and will likely ack it
 * soon). Holding lasts at most `maxHoldMs`, after which the record is written whatever the gate
 * says. Positions are given in offset order, so a held record keeps every later record of its
 * log back too. Held records take GroupCommitter tickets: flushed() waits until they are
 * written or elided, so nothing is confirmed before it is durable, except what its consumer
 * acked, which is gone anyway. RabbitMQ's message store does the same for a message removed
 * before it was written: confirmed, never written.
 *
 * A round that writes only ELIDED records does not fsync: they stand for nothing that must
 * survive a power loss. The next round that writes data fsyncs those segments as well, so no
 * synced record ever follows an unsynced one in the log (recovery would cut the log there).
 */
import { SluiceError } from '../../common/mod.js';
import { datasync, datasyncThen } from '../io.js';
import type { Durability } from '../durability/policy.js';
import type { GroupCommitter, RoundDone, RoundParticipant } from '../durability/group-commit.js';
import type { JournalBatch } from '../durability/journal.js';
import {
  checkRecord,
  encodeRecord,
  encodeRecordHeader,
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
import { Segment, SEGMENT_HEADER } from './segment.js';
import { writeChunks, writeInline, type PendingChunk } from './round-writes.js';
import { recoverSegments, type LogRecoveryReport } from './log-recovery.js';
import { readRecords, readRecordSync, type LogRecord } from './segment-read.js';
import { HeldRecords, Placement, type HeldRecord, type PlacementValue, type WriteGate } from './held-records.js';

export type { LogRecoveryReport } from './log-recovery.js';
export type { LogRecord } from './segment-read.js';
export { Placement, type PlacementValue, type WriteGate } from './held-records.js';

export interface LogOptions {
  /** Target size of a segment file (larger for large records; a single larger record gets a segment of its own). */
  segmentBytes?: number;
  /** Bytes between sparse index entries. */
  indexInterval?: number;
  durability?: Durability;
  /**
   * A segment grows past segmentBytes until it holds this many records of the size being
   * appended (up to 1 GiB). Default 1: only a single larger record exceeds segmentBytes.
   */
  minRecordsPerSegment?: number;
}

export interface RetentionPolicy {
  maxBytes?: number;
  maxAgeMs?: number;
}

const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
/** Growth for minRecordsPerSegment stops here (index positions are u32; a record is at most MAX_RECORD_BYTES). */
const MAX_SEGMENT_BYTES = 1024 * 1024 * 1024;
const SLAB_BYTES = 64 * 1024;
const NO_SEGMENTS: Segment[] = [];
/** appendRetained() payloads of this size or more are written from the caller's buffer, and may be held. */
export const RETAIN_MIN_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

export class SegmentLog implements RoundParticipant {
  readonly id: number;
  readonly name: string;
  readonly dir: string;
  readonly durability: Durability;
  readonly segmentBytes: number;
  readonly indexInterval: number;
  readonly minRecordsPerSegment: number;
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
  /** Appended, not placed yet (see "Held records"). */
  #held = new HeldRecords();
  #gate: WriteGate | null = null;
  #maxHoldMs = 0;
  #holdTimer: NodeJS.Timeout | null = null;
  /** Segments that got ELIDED records in a round without fsync (see the file comment). */
  #unsynced: Segment[] = [];
  /** ELIDED records found by recovery or journal replay, for the owner (takeElidedAtOpen). */
  #elidedAtOpen: number[] = [];
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
    this.minRecordsPerSegment = Math.max(1, opts.minRecordsPerSegment ?? 1);
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
  /** Records appended and not placed yet (held back, or waiting for their first round). */
  get heldCount(): number {
    return this.#held.length;
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
   * the last) and truncates each at its first bad record (log-recovery.ts). `trustLastIndex`
   * is set after a clean shutdown, when the last segment's index was written at close.
   */
  async open(trustLastIndex: boolean): Promise<LogRecoveryReport> {
    const report: LogRecoveryReport = { log: this.name, truncatedBytes: 0, quarantined: [], problems: [], replayed: 0 };
    const { segments, elided } = await recoverSegments(this.dir, this.indexInterval, trustLastIndex, report);
    this.#segments = segments;
    this.#elidedAtOpen = elided;
    const last = this.#segments[this.#segments.length - 1];
    this.#nextOffset = last ? last.nextOffset : 0;
    // An empty trailing segment keeps the offset sequence; without any, a fresh log starts at 0.
    this.#writtenOffset = this.#nextOffset;
    this.#roundEndOffset = this.#nextOffset;
    return report;
  }

  /**
   * Offsets of the ELIDED records that recovery scanned or journal replay restored since open
   * (their owner may have lost its own note of releasing them in the crash); returned once.
   */
  takeElidedAtOpen(): number[] {
    const e = this.#elidedAtOpen;
    this.#elidedAtOpen = [];
    return e;
  }

  /** Appends one record; returns its offset. The bytes are written in the next commit round. */
  append(payload: Uint8Array, ts: number = Date.now(), flags = 0, type: number = RecordType.DATA): number {
    const size = this.#checkAppend(payload.length);
    const seg = this.#segmentFor(size);
    const offset = this.#nextOffset++;
    seg.assign(offset);
    // Behind held records it is placed after them, from a copy: the caller may reuse its buffer.
    if (this.#held.length > 0) this.#hold(seg, offset, Buffer.from(payload), ts, flags, type, size, false);
    else this.#place(seg, offset, payload, ts, flags, type, false);
    this.#committer.markDirty(this);
    return offset;
  }

  /**
   * append() for a payload that will never change: one of RETAIN_MIN_BYTES or more is written
   * from `payload` itself rather than copied, and with a write gate set it is held until a
   * round starts, when the gate decides (see "Held records").
   */
  appendRetained(payload: Buffer, ts: number = Date.now(), flags = 0): number {
    const size = this.#checkAppend(payload.length);
    const seg = this.#segmentFor(size);
    const offset = this.#nextOffset++;
    seg.assign(offset);
    const retained = payload.length >= RETAIN_MIN_BYTES;
    if (this.#held.length > 0 || (retained && this.#gate !== null)) this.#hold(seg, offset, payload, ts, flags, RecordType.DATA, size, retained);
    else this.#place(seg, offset, payload, ts, flags, RecordType.DATA, retained);
    this.#committer.markDirty(this);
    return offset;
  }

  /** The record size for a payload of `length` bytes, after checking that it may be appended. */
  #checkAppend(length: number): number {
    if (this.#closed) throw new SluiceError('SLUICE_STORAGE_CLOSED');
    const size = RECORD_HEADER + length;
    if (size > MAX_RECORD_BYTES) throw new SluiceError('SLUICE_STORAGE_RECORD_TOO_LARGE', `record of ${size} bytes`);
    return size;
  }

  /**
   * Lets `gate` decide, at each round, about the retained records appended from now on (see
   * "Held records"); none is held longer than `maxHoldMs`. null: write everything, now
   * including whatever is held.
   */
  setWriteGate(gate: WriteGate | null, maxHoldMs = 0): void {
    this.#gate = gate;
    this.#maxHoldMs = maxHoldMs;
    if (gate === null) this.reconsiderHeld();
  }

  /** The gate's answer for a held record may have changed (its message was acked or requeued). */
  reconsiderHeld(): void {
    if (this.#held.length > 0 && !this.#closed) this.#committer.markDirty(this);
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
    if (seg === undefined || seg.sealed || (seg.records > 0 && seg.size + seg.reserved + size > this.#rollBytes(seg, size))) {
      if (seg !== undefined && !seg.sealed) {
        seg.sealed = true;
        this.#sealQueue.push(seg);
      }
      seg = new Segment(this.dir, this.#nextOffset, this.indexInterval);
      seg.pendingCreate = true;
      this.#segments.push(seg);
    }
    if (size > seg.largestRecord) seg.largestRecord = size;
    return seg;
  }

  /** Where `seg` rolls before a record of `size` bytes: sized by the largest record it takes. */
  #rollBytes(seg: Segment, size: number): number {
    if (this.minRecordsPerSegment === 1) return this.segmentBytes;
    return Math.max(this.segmentBytes, Math.min(MAX_SEGMENT_BYTES, Math.max(size, seg.largestRecord) * this.minRecordsPerSegment));
  }

  #hold(seg: Segment, offset: number, payload: Buffer, ts: number, flags: number, type: number, size: number, retained: boolean): void {
    seg.reserved += size;
    // Nobody waits for a 'none' log's durability, so its records never hold up flushed().
    const ticket = this.durability === 'none' ? Infinity : this.#committer.ticket();
    this.#held.push({ offset, seg, payload, ts, flags, type, size, retained, ticket, at: performance.now() });
  }

  /** Gives the record its position (the end of `seg`) and encodes it into the pending chunk. */
  #place(seg: Segment, offset: number, payload: Uint8Array, ts: number, flags: number, type: number, retained: boolean): void {
    const c = this.#chunkFor(seg);
    const pos = seg.size;
    const size = RECORD_HEADER + payload.length;
    if (retained) {
      if (this.#slab.length - this.#slabPos < RECORD_HEADER) this.#newSlab(RECORD_HEADER);
      this.#slabPos = encodeRecordHeader(this.#slab, this.#slabPos, offset, ts, type, flags, payload as Buffer);
      this.#closeChunk();
      c.bufs.push(payload as Buffer);
      c.bytes += payload.length;
    } else {
      if (this.#slab.length - this.#slabPos < size) this.#newSlab(size);
      this.#slabPos = encodeRecord(this.#slab, this.#slabPos, offset, ts, type, flags, payload);
    }
    seg.place(offset, pos, size, ts);
    if (type !== RecordType.ELIDED) c.data = true;
  }

  /** The pending chunk that takes the next bytes of `seg` (the last one, or a new one). */
  #chunkFor(seg: Segment): PendingChunk {
    const last = this.#pending[this.#pending.length - 1];
    if (last !== undefined && last.seg === seg) return last;
    this.#closeChunk();
    const c: PendingChunk = { seg, pos: seg.size, bufs: [], bytes: 0, create: seg.pendingCreate, data: false };
    seg.pendingCreate = false;
    this.#pending.push(c);
    return c;
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

  /** Places held records, oldest first, until the gate holds one (see "Held records"). */
  #placeHeld(): void {
    const now = performance.now();
    for (let r = this.#held.peek(); r !== undefined; r = this.#held.peek()) {
      let p: PlacementValue = Placement.WRITE;
      if (r.retained && this.#gate !== null) {
        p = this.#gate(r.offset);
        if (p === Placement.HOLD && now - r.at >= this.#maxHoldMs) p = Placement.WRITE;
      }
      if (p === Placement.HOLD) break;
      this.#held.shift();
      r.seg.reserved -= r.size;
      if (p === Placement.ELIDE) this.#place(r.seg, r.offset, EMPTY, r.ts, r.flags, RecordType.ELIDED, false);
      else this.#place(r.seg, r.offset, r.payload, r.ts, r.flags, r.type, r.retained);
    }
  }

  /** Starts a round for the held head once its hold runs out (an ack may come first). */
  #armHoldTimer(head: HeldRecord): void {
    if (this.#holdTimer !== null || this.#closed) return;
    const wait = Math.max(1, Math.ceil(this.#maxHoldMs - (performance.now() - head.at)));
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = null;
      this.reconsiderHeld();
    }, wait);
  }

  // RoundParticipant: called by the GroupCommitter.
  needsSync(): boolean {
    if (this.durability !== 'fsync') return false;
    if (this.#held.length > 0) return true;
    for (const c of this.#pending) if (c.data) return true;
    return false;
  }

  heldTicket(): number {
    return this.#held.peek()?.ticket ?? Infinity;
  }

  beginRound(batch: JournalBatch, direct: boolean, done: RoundDone): boolean {
    if (this.#closed) {
      // Closed (deleted, or abandoned as in a crash): it writes nothing more, and a write into a
      // deleted directory must not fail a round that confirms other logs' records.
      this.#pending = [];
      this.#held.clear();
      return false;
    }
    if (this.#held.length > 0) this.#placeHeld();
    this.#closeChunk();
    const chunks = this.#pending;
    this.#pending = [];
    // The slab's written part now belongs to the round; keep filling the rest of it.
    this.#inRound = chunks;
    const head = this.#held.peek();
    this.#roundEndOffset = head !== undefined ? head.offset : this.#nextOffset;
    if (head !== undefined) this.#armHoldTimer(head);
    if (chunks.length === 0) return false;
    const fsync = this.durability === 'fsync';
    let data = false;
    for (const c of chunks) if (c.data) data = true;
    if (fsync && !direct) for (const c of chunks) batch.addv(this.id, c.bufs, c.bytes);
    // ELIDED records alone need no fsync; the next round with data syncs their segments too.
    const syncOld = fsync && data && this.#unsynced.length > 0 ? this.#unsynced.splice(0) : NO_SEGMENTS;
    const sync = fsync && direct && data;
    const leftUnsynced = fsync && direct && !data;
    // The common round (one open segment, small appends, synced directly or not at all) is
    // written inline and synced with one callback: no promise, no async frame per round.
    if (syncOld.length === 0 && (!fsync || direct) && writeInline(chunks)) {
      if (leftUnsynced) this.#markUnsynced(chunks);
      if (!sync) return false;
      datasyncThen(chunks[0]!.seg.fd, done);
      return true;
    }
    writeChunks(this.dir, chunks, sync, syncOld).then(() => {
      if (leftUnsynced) this.#markUnsynced(chunks);
      done(null);
    }, done);
    return true;
  }

  #markUnsynced(chunks: PendingChunk[]): void {
    for (const c of chunks) if (!this.#unsynced.includes(c.seg)) this.#unsynced.push(c.seg);
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
    let seg: Segment | null = null;
    while (seg === null) {
      if (offset >= this.#nextOffset) return [];
      if (offset >= this.#writtenOffset) await this.waitForOffset(offset);
      seg = this.#find(offset);
      if (seg === null) {
        // Removed range: continue at the next stored segment, once written (until its first
        // round its file may not even exist), and look again (it may be removed by then).
        const next = this.#segments.find((s) => s.base > offset);
        if (next === undefined) return [];
        offset = next.base;
      }
    }
    const s = seg;
    return s.use(async (fd) => readRecords(s, fd, offset, maxBytes, maxRecords, Math.min(s.size, this.#writtenEndOf(s))));
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
    // Every record before `offset` in the segment is written, so the scan never parses unwritten bytes.
    return readRecordSync(seg, seg.fd, offset, scratch);
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
        const type = recordType(bytes, p);
        this.append(recordPayload(bytes, p), recordTimestamp(bytes, p), recordFlags(bytes, p), type);
        if (type === RecordType.ELIDED) this.#elidedAtOpen.push(off);
        added++;
      }
      p += len;
    }
    return added;
  }

  /**
   * Writes the last segment's index so the next open can skip scanning it (clean shutdown).
   * Held records should have been released first (setWriteGate(null) and a round); any still
   * held are dropped unwritten, as a crash would, and the last segment is left to be scanned.
   */
  async closeClean(): Promise<void> {
    this.#closed = true;
    const dropped = this.#dropHeld();
    if (this.#sealing) await this.#sealing;
    const last = this.#segments[this.#segments.length - 1];
    for (const s of this.#segments) {
      if (s.fd >= 0 && s.dirty) await datasync(s.fd);
      s.dirty = false;
    }
    if (!dropped && last !== undefined && last.fd >= 0 && last.records > 0) await last.writeIndex();
    for (const s of this.#segments) await s.close();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#dropHeld();
    if (this.#sealing) await this.#sealing;
    for (const s of this.#segments) await s.close();
  }

  /** Forgets held records (never written, never confirmed); returns whether there were any. */
  #dropHeld(): boolean {
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    this.#holdTimer = null;
    if (this.#held.length === 0) return false;
    this.#held.clear();
    // The committer asks holders after each round; one more round lets it see this one is done.
    this.#committer.markDirty(this);
    return true;
  }
}

/**
 * A ScheduleStore on files: the schedule log (a SegmentLog with per-segment done marks, like a
 * queue), an on-disk time index of bucket files (time-bucket.ts), and in memory only the
 * entries due before `loadedUntil` (about now + preloadMs, rounded up to a bucket boundary) in
 * a typed-array min-heap (research, recommended design §7; RocketMQ's timer log, Node-sized).
 *
 *   <log dir>/<base>.seg, .idx     the schedule log (log/segment-log.ts); record = entry (schedule-record.ts)
 *   <log dir>/<base>.done          done marks of a segment (schedule-segment.ts)
 *   <log dir>/time/<start>.tix     time index bucket files, one per `bucketMs` of dueAt (time-bucket.ts, time-index.ts)
 *   <log dir>/time/groups          group names by id (schedule-groups.ts)
 *
 * Memory: per pending entry 4 bytes (group id) and 1 bit (done); per entry due before
 * `loadedUntil` 16 bytes more in the heap; per group a number. Entries due later cost no
 * memory until their bucket is loaded, `preloadMs` before it begins.
 *
 * Crash ordering, file by file:
 * - The log is the truth. An entry is stored once its record is (durable per the policy after
 *   flushed()). Bucket files and the groups file are derived: written in the same commit round
 *   as the record but never fsynced. On open (schedule-recovery.ts) every live id of the log
 *   that no valid bucket entry names is read back from the log and indexed again, and bucket
 *   entries naming ids the log does not hold (its tail was cut) are removed before any new id
 *   can reuse them.
 * - Done marks are appended to the segment's `.done` file (fdatasynced in the same round under
 *   'fsync'). A mark is written in the round after the one during which done() was called:
 *   that earlier round carries whatever the caller appended before done() (the fired
 *   message), so a mark never reaches the disk before the message it stands for.
 * - A segment is deleted only when all its marks are written; its directory entry is synced
 *   before its `.done` file is removed, so the marks never vanish while the entries remain.
 *
 * Guarantees (kill -9 under 'os' and 'fsync'; also power loss under 'fsync'):
 * - add(): after a flushed() that began after it resolved, the entry is pending after any
 *   restart until it is done or cancelled.
 * - done()/cancel(): after a flushed() that began after it resolved, the entry is never
 *   handed out again. Before that it may be, after a restart: that is the only way an entry
 *   fires twice.
 * - Firing protocol for the caller: take the entry, append the fired message to its target
 *   log, call done(id) (same turn is fine), await flushed(). The message is never lost: the
 *   done mark is written only after the round holding the message has completed. It fires
 *   twice only when the process dies after the message's write reached the disk and before
 *   the done mark's did, a window of one commit round (typically well under a millisecond,
 *   and only for entries fired in that window). Exactly-once across kill -9 would need the
 *   message and the mark in one atomic write, which two files cannot give; a caller that must
 *   never duplicate can dedupe on the entry id, which the fired message can carry.
 */
import { unlink } from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import { systemClock, type Clock } from '../../common/mod.js';
import { closeFile, datasync, fsyncDir, openFile, writevAt } from '../io.js';
import type { Durability } from '../durability/policy.js';
import type { GroupCommitter, RoundDone, RoundParticipant } from '../durability/group-commit.js';
import type { JournalBatch } from '../durability/journal.js';
import type { SegmentLog } from '../log/segment-log.js';
import type { Storage } from '../storage.js';
import { readEntriesFast, encodeEntry } from './schedule-record.js';
import { UnwrittenEntries } from './unwritten-entries.js';
import { ScheduleGroups } from './schedule-groups.js';
import { ScheduleRecovery, type RecoveryTarget, type ScheduleRecoveryReport } from './schedule-recovery.js';
import { doneFileName, ScheduleSegment } from './schedule-segment.js';
import type { BrowseOptions, ScheduledEntry, ScheduleStore } from './schedule-store.js';
import { TimeHeap } from './time-heap.js';
import { BUCKET_ENTRY, BUCKET_HEADER, bucketEntryValid, entryDueAt, entryGroup, entryId, TIME_INDEX_DIR, type TimeBucket } from './time-bucket.js';
import { TimeIndex } from './time-index.js';

export type { ScheduleRecoveryReport } from './schedule-recovery.js';

/** Schedule logs are named `schedule:<name>` in the storage, apart from queue logs. */
export const SCHEDULE_LOG_PREFIX = 'schedule:';

export interface ScheduleStoreOptions {
  /** Default 'fsync'. */
  durability?: Durability;
  /** Width of a time index bucket file (ms of dueAt). Default one hour. */
  bucketMs?: number;
  /** A bucket is loaded into memory this long before it begins. Default one minute. */
  preloadMs?: number;
  /** Schedule log segment size. Default 8 MiB. */
  segmentBytes?: number;
  clock?: Clock;
}

const APPEND_FILE = FS.O_WRONLY | FS.O_CREAT;
/**
 * Sparse index step of the schedule log. Entries are read back one by one in due order, not in
 * log order, so each read scans from the index entry before it: a fine index keeps that scan
 * to one small read (about 8 bytes of memory per 512 bytes of log).
 */
const INDEX_INTERVAL = 512;
/** Longest a takeDue() reads inline before handing the rest of its batch to the thread pool. */
const SYNC_READ_BUDGET_MS = 4;

export class FileScheduleStore implements ScheduleStore, RoundParticipant {
  readonly name: string;
  readonly #log: SegmentLog;
  readonly #committer: GroupCommitter;
  readonly #clock: Clock;
  readonly #preloadMs: number;
  readonly #sync: boolean;
  #segs: ScheduleSegment[] = [];
  readonly #groups: ScheduleGroups;
  #live = 0;
  readonly #time: TimeIndex;
  #heap = new TimeHeap();
  /** Every pending entry due before this is in the heap or taken. A bucket boundary. */
  #loadedUntil = 0;
  #advancing: Promise<void> | null = null;
  /** Appended entries whose round has not ended: takeDue() takes them from here. */
  readonly #unwritten = new UnwrittenEntries();
  /** Handed out by takeDue() and not done or released: id -> dueAt. */
  #taken = new Map<number, number>();
  // Done marks: queued (done() called) -> awaiting (their round runs) -> ready -> written.
  #doneQueued: number[] = [];
  #doneAwaiting: number[] = [];
  #doneReady: number[] = [];
  #doneSeq = 0;
  #doneWrittenSeq = 0;
  #scratch: Buffer = Buffer.allocUnsafe(4096);
  readonly #readScratch: Buffer = Buffer.allocUnsafe(2 * INDEX_INTERVAL + 1024);
  #recordBytes = 0;
  #records = 0;
  #closed = false;
  #failed: Error | null = null;

  private constructor(name: string, log: SegmentLog, committer: GroupCommitter, opts: ScheduleStoreOptions) {
    this.name = name;
    this.#log = log;
    this.#committer = committer;
    this.#clock = opts.clock ?? systemClock;
    const bucketMs = opts.bucketMs ?? 3_600_000;
    this.#preloadMs = opts.preloadMs ?? 60_000;
    this.#sync = log.durability === 'fsync';
    if (!(bucketMs >= 1) || !Number.isInteger(bucketMs)) throw new RangeError('bucketMs must be a positive integer');
    const dir = `${log.dir}/${TIME_INDEX_DIR}`;
    this.#time = new TimeIndex(dir, bucketMs);
    this.#groups = new ScheduleGroups(dir);
  }

  /** Opens (or creates) the schedule called `name` in `storage`, recovering it after a crash. */
  static async open(
    storage: Storage,
    name: string,
    opts: ScheduleStoreOptions = {},
  ): Promise<{ store: FileScheduleStore; report: ScheduleRecoveryReport }> {
    const log = await storage.openLog(SCHEDULE_LOG_PREFIX + name, {
      durability: opts.durability ?? 'fsync',
      segmentBytes: opts.segmentBytes ?? 8 * 1024 * 1024,
      indexInterval: INDEX_INTERVAL,
    });
    const store = new FileScheduleStore(name, log, storage.committer, opts);
    const report = await store.#recover();
    return { store, report };
  }

  // ---- adding ----

  add(dueAt: number, group: string, payload: Buffer): number {
    if (this.#closed) throw new Error('schedule store is closed');
    if (this.#failed) throw this.#failed;
    if (!Number.isFinite(dueAt)) throw new RangeError(`dueAt must be a finite number, got ${dueAt}`);
    const gid = this.#groups.idOf(group);
    const gb = this.#groups.bytes(gid);
    this.#scratch = encodeEntry(this.#scratch, dueAt, gb, payload);
    const size = 10 + gb.length + payload.length;
    const id = this.#log.append(this.#scratch.subarray(0, size), this.#clock.now());
    this.#unwritten.dropBelow(this.#log.writtenOffset);
    this.#unwritten.add(id, dueAt, gid, payload);
    this.#recordBytes += size + 28;
    this.#records++;
    this.#segmentFor(id).added(id, gid);
    this.#groups.added(gid);
    this.#live++;
    this.#index(dueAt, id, gid);
    return id;
  }

  /** Puts an entry into the time index: its bucket file, and the heap when it is due soon. */
  #index(dueAt: number, id: number, gid: number): void {
    this.#time.append(dueAt, id, gid);
    if (dueAt < this.#loadedUntil) this.#heap.push(dueAt, id);
    this.#committer.markDirty(this);
  }

  #segmentFor(id: number): ScheduleSegment {
    const last = this.#segs[this.#segs.length - 1];
    const base = this.#log.segmentRange(id)?.base ?? id;
    if (last !== undefined && last.base === base) return last;
    const seg = new ScheduleSegment(base, 0);
    this.#segs.push(seg);
    return seg;
  }

  #segmentOf(id: number): ScheduleSegment | null {
    const segs = this.#segs;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = segs[mid]!;
      if (id < s.base) hi = mid - 1;
      else if (id >= s.base + s.count) lo = mid + 1;
      else return s;
    }
    return null;
  }

  #isLive(id: number): boolean {
    const s = this.#segmentOf(id);
    return s !== null && !s.isDone(id);
  }

  flushed(): Promise<void> {
    return this.#flushed();
  }

  /** Entries kept in memory because their round has not ended (at most a round or two's worth). */
  get unwrittenCount(): number {
    return this.#unwritten.size;
  }

  async #flushed(): Promise<void> {
    const target = this.#doneSeq;
    await this.#log.flushed();
    while (this.#doneWrittenSeq < target) {
      if (this.#failed) throw this.#failed;
      await this.#committer.flushed();
    }
    if (this.#failed) throw this.#failed;
  }

  // ---- firing ----

  async takeDue(now: number, max: number): Promise<ScheduledEntry[]> {
    if (this.#closed) throw new Error('schedule store is closed');
    await this.#advance(now);
    const ids: number[] = [];
    const heap = this.#heap;
    while (heap.size > 0 && ids.length < max && heap.topDue <= now) {
      const id = heap.topId;
      const due = heap.topDue;
      heap.pop();
      if (!this.#isLive(id) || this.#taken.has(id)) continue;
      this.#taken.set(id, due);
      ids.push(id);
    }
    if (ids.length === 0) return [];
    // Entries whose round has not ended yet come from memory: a read would wait for the round
    // (its fsync included), and an entry due soon after it was added would fire that much late.
    const unwritten = this.#unwritten;
    unwritten.dropBelow(this.#log.writtenOffset);
    const out: Array<ScheduledEntry | null> = [];
    let toRead: number[] | null = null;
    let at: number[] | null = null;
    for (const id of ids) {
      const e = unwritten.get(id, this.#groups);
      if (e === undefined) {
        (toRead ??= []).push(id);
        (at ??= []).push(out.length);
      }
      out.push(e ?? null);
    }
    if (toRead !== null) {
      const got = await readEntriesFast(this.#log, toRead, this.#avgRecordBytes(), this.#readScratch, SYNC_READ_BUDGET_MS);
      for (let k = 0; k < got.length; k++) out[at![k]!] = got[k]!;
    }
    return out.filter((e): e is ScheduledEntry => e !== null);
  }

  #avgRecordBytes(): number {
    return this.#records > 0 ? this.#recordBytes / this.#records : 64;
  }

  /** Loads every bucket that begins before now + preloadMs. One advance at a time. */
  async #advance(now: number): Promise<void> {
    while (this.#advancing !== null) await this.#advancing;
    const target = now + this.#preloadMs;
    if (this.#loadedUntil > target) return;
    this.#advancing = (async () => {
      while (this.#loadedUntil <= target) {
        const time = this.#time;
        const next = time.starts[time.firstIndexAtOrAfter(this.#loadedUntil)];
        if (next === undefined || next > target) {
          this.#loadedUntil = Math.max(this.#loadedUntil, time.bucketStart(target) + time.bucketMs);
          break;
        }
        // Synchronously: from here on, adds to this bucket go to the heap directly.
        this.#loadedUntil = next + time.bucketMs;
        await this.#load(time.get(next)!);
      }
    })().finally(() => {
      this.#advancing = null;
    });
    await this.#advancing;
  }

  /**
   * Pushes a bucket's live entries into the heap: what its file held when the load began
   * plus what was in memory then (being written or waiting for a round); see TimeBucket.
   */
  async #load(b: TimeBucket): Promise<void> {
    b.loading = true;
    try {
      const end = BUCKET_HEADER + b.fileBytes;
      for (const buf of b.memoryEntries()) this.#pushEntries(buf, buf.length);
      if (!b.created || end === BUCKET_HEADER) return;
      await this.#time.read(b.start, end, (buf, n) => this.#pushEntries(buf, n));
    } finally {
      b.loading = false;
    }
  }

  #pushEntries(buf: Buffer, n: number): void {
    for (let p = 0; p + BUCKET_ENTRY <= n; p += BUCKET_ENTRY) {
      if (!bucketEntryValid(buf, p)) continue;
      const id = entryId(buf, p);
      if (this.#isLive(id) && !this.#taken.has(id)) this.#heap.push(entryDueAt(buf, p), id);
    }
  }

  nextDueAt(): number | null {
    if (this.#live === 0) return null;
    const heap = this.#heap;
    while (heap.size > 0 && (!this.#isLive(heap.topId) || this.#taken.has(heap.topId))) heap.pop();
    let next: number | null = heap.size > 0 ? heap.topDue : null;
    const later = this.#time.starts[this.#time.firstIndexAtOrAfter(this.#loadedUntil)];
    if (later !== undefined) {
      const wake = later - this.#preloadMs;
      if (next === null || wake < next) next = wake;
    }
    return next;
  }

  done(id: number): void {
    this.#remove(id);
  }

  cancel(id: number): boolean {
    return this.#remove(id);
  }

  #remove(id: number): boolean {
    if (this.#closed) throw new Error('schedule store is closed');
    const seg = this.#segmentOf(id);
    if (seg === null || !seg.mark(id)) return false;
    this.#taken.delete(id);
    this.#groups.removed(seg.group(id));
    this.#live--;
    this.#doneQueued.push(id);
    this.#doneSeq++;
    this.#committer.markDirty(this);
    return true;
  }

  release(id: number): void {
    const due = this.#taken.get(id);
    if (due === undefined) return;
    this.#taken.delete(id);
    if (this.#isLive(id)) this.#heap.push(due, id);
  }

  // ---- looking ----

  count(group?: string): number {
    if (group === undefined) return this.#live;
    const gid = this.#groups.find(group);
    return gid === undefined ? 0 : this.#groups.count(gid);
  }

  groupCounts(): Map<string, number> {
    return this.#groups.counts();
  }

  /** Walks the bucket files in time order from `fromDueAt`, so far-future entries cost no memory. */
  async browse(opts: BrowseOptions): Promise<ScheduledEntry[]> {
    if (opts.limit <= 0) return [];
    let gid: number | undefined;
    if (opts.group !== undefined) {
      gid = this.#groups.find(opts.group);
      if (gid === undefined) return [];
    }
    const from = opts.fromDueAt ?? -Infinity;
    const afterId = opts.afterId ?? -1;
    const time = this.#time;
    const firstStart = Number.isFinite(from) ? time.bucketStart(from) : -Infinity;
    const picked: Array<{ dueAt: number; id: number }> = [];
    const starts = time.starts.filter((s) => s >= firstStart);
    for (const start of starts) {
      const b = time.get(start);
      if (b === undefined) continue;
      const found: Array<{ dueAt: number; id: number }> = [];
      const take = (buf: Buffer, n: number): void => {
        for (let p = 0; p + BUCKET_ENTRY <= n; p += BUCKET_ENTRY) {
          if (!bucketEntryValid(buf, p)) continue;
          const id = entryId(buf, p);
          const dueAt = entryDueAt(buf, p);
          if (dueAt < from || (dueAt === from && id <= afterId)) continue;
          if (gid !== undefined && entryGroup(buf, p) !== gid) continue;
          if (this.#isLive(id)) found.push({ dueAt, id });
        }
      };
      const end = BUCKET_HEADER + b.fileBytes;
      const mem = b.memoryEntries();
      for (const buf of mem) take(buf, buf.length);
      if (b.created) await time.read(start, end, take);
      found.sort((x, y) => x.dueAt - y.dueAt || x.id - y.id);
      for (const e of found) picked.push(e);
      if (picked.length >= opts.limit) break;
    }
    const ids = picked.slice(0, opts.limit).map((e) => e.id);
    const got = await readEntriesFast(this.#log, ids, this.#avgRecordBytes(), this.#readScratch, SYNC_READ_BUDGET_MS);
    return got.filter((e): e is ScheduledEntry => e !== null && this.#isLive(e.id));
  }

  /** Memory held by the in-memory index (for tests and stats). */
  memoryStats(): { heapEntries: number; heapBytes: number; taken: number; buckets: number; segments: number } {
    return {
      heapEntries: this.#heap.size,
      heapBytes: this.#heap.capacityBytes,
      taken: this.#taken.size,
      buckets: this.#time.size,
      segments: this.#segs.length,
    };
  }

  // ---- the commit round ----

  beginRound(_batch: JournalBatch, _direct: boolean, done: RoundDone): boolean {
    const groups = this.#groups.takePending();
    const buckets = this.#time.detachDirty();
    // Marks queued before this round wait for it to complete (it carries what the caller
    // appended before done()); marks whose round has completed are written now.
    this.#doneAwaiting = this.#doneQueued;
    this.#doneQueued = [];
    const ready = this.#doneReady;
    this.#doneReady = [];
    if (groups.length === 0 && buckets.length === 0 && ready.length === 0 && !this.#housekeepingDue()) return false;
    this.#writeRound(groups, buckets, ready).then(() => done(null), done);
    return true;
  }

  endRound(err: Error | null): void {
    const awaiting = this.#doneAwaiting;
    this.#doneAwaiting = [];
    if (err) {
      this.#failed ??= err;
      return;
    }
    if (awaiting.length > 0) {
      for (const id of awaiting) this.#doneReady.push(id);
      this.#committer.markDirty(this);
    }
  }

  async #writeRound(groups: Buffer[], buckets: Array<[TimeBucket, Buffer]>, ready: number[]): Promise<void> {
    // Group names before the bucket entries that use them.
    if (groups.length > 0) await this.#groups.write(groups);
    for (const [b, data] of buckets) await this.#time.write(b, data);
    if (ready.length > 0) await this.#writeDone(ready);
    await this.#housekeeping();
  }

  async #writeDone(ready: number[]): Promise<void> {
    const bySeg = new Map<ScheduleSegment, number[]>();
    for (const id of ready) {
      const seg = this.#segmentOf(id);
      if (seg === null) continue;
      let l = bySeg.get(seg);
      if (l === undefined) bySeg.set(seg, (l = []));
      l.push(id - seg.base);
    }
    for (const [seg, rels] of bySeg) {
      const buf = Buffer.allocUnsafe(rels.length * 4);
      for (let i = 0; i < rels.length; i++) buf.writeUInt32LE(rels[i]!, i * 4);
      if (seg.fd < 0) seg.fd = await openFile(`${this.#log.dir}/${doneFileName(seg.base)}`, APPEND_FILE);
      const pos = seg.fileBytes;
      seg.fileBytes += buf.length;
      await writevAt(seg.fd, [buf], pos);
      if (this.#sync) await datasync(seg.fd);
      seg.doneWritten += rels.length;
    }
    this.#doneWrittenSeq += ready.length;
  }

  /** Segments to reclaim or bucket files to delete exist. */
  #housekeepingDue(): boolean {
    return this.#reclaimable().length > 0 || this.#deletableBuckets().length > 0;
  }

  async #housekeeping(): Promise<void> {
    for (const seg of this.#reclaimable()) await this.#reclaim(seg);
    for (const b of this.#deletableBuckets()) await this.#time.delete(b);
  }

  /** Fully done segments with every mark written; never the log's last segment. */
  #reclaimable(): ScheduleSegment[] {
    const out: ScheduleSegment[] = [];
    for (let i = 0; i < this.#segs.length - 1; i++) {
      const s = this.#segs[i]!;
      if (s.complete && s.doneWritten >= s.count) out.push(s);
    }
    return out;
  }

  async #reclaim(seg: ScheduleSegment): Promise<boolean> {
    if (!(await this.#log.removeSegment(seg.base))) return false; // not sealed yet: a later round
    this.#segs = this.#segs.filter((s) => s !== seg);
    // The segment's removal must be durable before its marks go (see the header).
    await fsyncDir(this.#log.dir);
    if (seg.fd >= 0) await closeFile(seg.fd);
    seg.fd = -1;
    await unlink(`${this.#log.dir}/${doneFileName(seg.base)}`).catch(() => undefined);
    return true;
  }

  /**
   * Loaded buckets none of whose entries can still be pending: everything in the heap and
   * everything taken is due at or after the bucket's end.
   */
  #deletableBuckets(): TimeBucket[] {
    const out: TimeBucket[] = [];
    const time = this.#time;
    if (time.starts.length === 0 || time.starts[0]! >= this.#loadedUntil) return out;
    const heap = this.#heap;
    while (heap.size > 0 && !this.#isLive(heap.topId)) heap.pop();
    let min = heap.size > 0 ? heap.topDue : Infinity;
    let takenChecked = false;
    for (const start of time.starts) {
      if (start >= this.#loadedUntil) break;
      const b = time.get(start)!;
      const end = start + time.bucketMs;
      if (b.busy || end > min) continue;
      if (!takenChecked) {
        takenChecked = true;
        for (const d of this.#taken.values()) if (d < min) min = d;
        if (end > min) continue;
      }
      out.push(b);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#flushed().catch(() => undefined);
    this.#closed = true;
    await this.#committer.settled();
    await this.#time.close();
    for (const s of this.#segs) if (s.fd >= 0) await closeFile(s.fd);
    await this.#groups.close();
    this.#heap.clear();
  }

  // ---- recovery (schedule-recovery.ts does the reading and checking) ----

  async #recover(): Promise<ScheduleRecoveryReport> {
    const started = Date.now();
    const log = this.#log;
    const report: ScheduleRecoveryReport = {
      schedule: this.name,
      pending: 0,
      reindexed: 0,
      droppedIndexEntries: 0,
      repairedBuckets: [],
      orphanDoneMarks: 0,
      reclaimedSegments: 0,
      durationMs: 0,
    };
    for (const base of log.segmentBases()) {
      const r = log.segmentRange(base)!;
      this.#segs.push(new ScheduleSegment(base, r.end - base));
    }
    this.#records = log.nextOffset - log.startOffset;
    this.#recordBytes = log.sizeBytes;
    // Recovery runs once per open, so closures here cost nothing that matters.
    const target: RecoveryTarget = {
      log,
      segs: this.#segs,
      groups: this.#groups,
      time: this.#time,
      segmentOf: (id) => this.#segmentOf(id),
      adopt: (seg, dueAt, id, gid) => {
        seg.setGroup(id, gid);
        this.#groups.added(gid);
        this.#live++;
        if (dueAt < this.#loadedUntil) this.#heap.push(dueAt, id);
      },
      reindex: (seg, dueAt, id, gid) => {
        seg.setGroup(id, gid);
        this.#groups.added(gid);
        this.#live++;
        this.#index(dueAt, id, gid);
      },
    };
    const recovery = new ScheduleRecovery(target, report);
    await recovery.loadMarksAndGroups();
    // Every pending entry due before loadedUntil goes to the heap as the index is read.
    this.#loadedUntil = this.#time.bucketStart(this.#clock.now() + this.#preloadMs) + this.#time.bucketMs;
    await recovery.rebuildIndex();
    for (const seg of this.#reclaimable()) if (await this.#reclaim(seg)) report.reclaimedSegments++;
    if (this.#groups.hasPending || this.#time.hasDirty) this.#committer.markDirty(this);
    report.pending = this.#live;
    report.durationMs = Date.now() - started;
    return report;
  }
}

/**
 * A ScheduleStore on files: the schedule log (a SegmentLog with per-segment done marks, like a
 * queue), an on-disk time index of bucket files (time-bucket.ts), and in memory only the
 * entries due before `loadedUntil` (about now + preloadMs, rounded up to a bucket boundary) in
 * a typed-array min-heap (research, recommended design §7; RocketMQ's timer log, Node-sized).
 *
 *   <log dir>/<base>.seg, .idx     the schedule log (log/segment-log.ts); record = entry (schedule-record.ts)
 *   <log dir>/<base>.done          done marks of a segment (schedule-segment.ts)
 *   <log dir>/time/<start>.tix     time index bucket files, one per `bucketMs` of dueAt (time-bucket.ts)
 *   <log dir>/time/groups          group names by id
 *
 * Memory: per pending entry 4 bytes (group id) and 1 bit (done); per entry due before
 * `loadedUntil` 16 bytes more in the heap; per group a number. Entries due later cost no
 * memory until their bucket is loaded, `preloadMs` before it begins.
 *
 * Crash ordering, file by file:
 * - The log is the truth. An entry is stored once its record is (durable per the policy after
 *   flushed()). Bucket files and the groups file are derived: written in the same commit round
 *   as the record but never fsynced. On open every live id of the log that no valid bucket
 *   entry names is read back from the log and indexed again, and bucket entries naming ids
 *   the log does not hold (its tail was cut) are removed before any new id can reuse them.
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
import { mkdir, readdir, readFile, rm, truncate, unlink } from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import { systemClock, type Clock } from '../../common/mod.js';
import { closeFile, datasync, fsyncDir, openFile, readAt, writeFileAtomic, writevAt } from '../io.js';
import type { Durability } from '../durability/policy.js';
import type { GroupCommitter, RoundParticipant } from '../durability/group-commit.js';
import type { JournalBatch } from '../durability/journal.js';
import type { SegmentLog } from '../log/segment-log.js';
import type { Storage } from '../storage.js';
import { readEntries, encodeEntry, decodeEntry } from './schedule-record.js';
import { doneFileName, parseDoneFileName, ScheduleSegment } from './schedule-segment.js';
import type { BrowseOptions, ScheduledEntry, ScheduleStore } from './schedule-store.js';
import { TimeHeap } from './time-heap.js';
import {
  BUCKET_ENTRY,
  BUCKET_HEADER,
  bucketEntryValid,
  bucketFileName,
  checkBucketHeader,
  encodeBucketHeader,
  encodeGroupRecord,
  entryDueAt,
  entryGroup,
  entryId,
  GROUPS_FILE,
  parseBucketFileName,
  parseGroups,
  TIME_INDEX_DIR,
  TimeBucket,
} from './time-bucket.js';

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

export interface ScheduleRecoveryReport {
  schedule: string;
  /** Pending entries after open. */
  pending: number;
  /** Live entries the time index did not name, read back from the log and indexed again. */
  reindexed: number;
  /** Bucket entries dropped: damaged, naming ids the log does not hold, duplicates, misplaced. */
  droppedIndexEntries: number;
  /** Bucket files rewritten without dropped entries, or removed as unreadable. */
  repairedBuckets: string[];
  /** Done marks naming an offset past the end of their segment. */
  orphanDoneMarks: number;
  /** Segments whose entries were all done, deleted on open. */
  reclaimedSegments: number;
  durationMs: number;
}

const READ_CHUNK = 1024 * 1024 - ((1024 * 1024) % BUCKET_ENTRY);
const MAX_OPEN_BUCKETS = 32;
const NEW_FILE = FS.O_WRONLY | FS.O_CREAT | FS.O_TRUNC;
const APPEND_FILE = FS.O_WRONLY | FS.O_CREAT;

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

export class FileScheduleStore implements ScheduleStore, RoundParticipant {
  readonly name: string;
  readonly #log: SegmentLog;
  readonly #committer: GroupCommitter;
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #preloadMs: number;
  readonly #sync: boolean;
  #segs: ScheduleSegment[] = [];
  // Groups: id -> name, UTF-8 bytes and pending count; name -> id.
  #groupIds = new Map<string, number>();
  #groupNames: string[] = [];
  #groupBytes: Buffer[] = [];
  #groupCounts: number[] = [];
  #groupsPending: Buffer[] = [];
  #groupsFileBytes = 0;
  #groupsFd = -1;
  #live = 0;
  #buckets = new Map<number, TimeBucket>();
  /** Bucket starts, ascending. */
  #starts: number[] = [];
  #dirtyBuckets = new Set<TimeBucket>();
  #fds = new Map<number, number>();
  #heap = new TimeHeap();
  /** Every pending entry due before this is in the heap or taken. A bucket boundary. */
  #loadedUntil = 0;
  #advancing: Promise<void> | null = null;
  /** Handed out by takeDue() and not done or released: id -> dueAt. */
  #taken = new Map<number, number>();
  // Done marks: queued (done() called) -> awaiting (their round runs) -> ready -> written.
  #doneQueued: number[] = [];
  #doneAwaiting: number[] = [];
  #doneReady: number[] = [];
  #doneSeq = 0;
  #doneWrittenSeq = 0;
  #scratch: Buffer = Buffer.allocUnsafe(4096);
  #recordBytes = 0;
  #records = 0;
  #closed = false;
  #failed: Error | null = null;

  private constructor(name: string, log: SegmentLog, committer: GroupCommitter, opts: ScheduleStoreOptions) {
    this.name = name;
    this.#log = log;
    this.#committer = committer;
    this.#dir = `${log.dir}/${TIME_INDEX_DIR}`;
    this.#clock = opts.clock ?? systemClock;
    this.#bucketMs = opts.bucketMs ?? 3_600_000;
    this.#preloadMs = opts.preloadMs ?? 60_000;
    this.#sync = log.durability === 'fsync';
    if (!(this.#bucketMs >= 1) || !Number.isInteger(this.#bucketMs)) throw new RangeError('bucketMs must be a positive integer');
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
    const gid = this.#groupId(group);
    const gb = this.#groupBytes[gid]!;
    this.#scratch = encodeEntry(this.#scratch, dueAt, gb, payload);
    const size = 10 + gb.length + payload.length;
    const id = this.#log.append(this.#scratch.subarray(0, size), this.#clock.now());
    this.#recordBytes += size + 28;
    this.#records++;
    this.#segmentFor(id).added(id, gid);
    this.#groupCounts[gid]!++;
    this.#live++;
    this.#index(dueAt, id, gid);
    return id;
  }

  /** Puts an entry into the time index: its bucket file, and the heap when it is due soon. */
  #index(dueAt: number, id: number, gid: number): void {
    const b = this.#bucket(this.#bucketStart(dueAt));
    b.append(dueAt, id, gid);
    this.#dirtyBuckets.add(b);
    if (dueAt < this.#loadedUntil) this.#heap.push(dueAt, id);
    this.#committer.markDirty(this);
  }

  #groupId(group: string): number {
    let gid = this.#groupIds.get(group);
    if (gid !== undefined) return gid;
    const bytes = Buffer.from(group, 'utf8');
    if (bytes.length > 0xffff) throw new RangeError('group name longer than 65535 bytes');
    gid = this.#groupNames.length;
    this.#setGroup(gid, group, bytes);
    this.#groupsPending.push(encodeGroupRecord(gid, bytes));
    return gid;
  }

  #setGroup(gid: number, name: string, bytes: Buffer): void {
    this.#groupIds.set(name, gid);
    this.#groupNames[gid] = name;
    this.#groupBytes[gid] = bytes;
    this.#groupCounts[gid] = 0;
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

  #bucketStart(dueAt: number): number {
    return Math.floor(dueAt / this.#bucketMs) * this.#bucketMs;
  }

  #bucket(start: number): TimeBucket {
    let b = this.#buckets.get(start);
    if (b === undefined) {
      b = new TimeBucket(start);
      this.#buckets.set(start, b);
      const i = this.#firstIndexAtOrAfter(start);
      this.#starts.splice(i, 0, start);
    }
    return b;
  }

  #firstIndexAtOrAfter(t: number): number {
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

  flushed(): Promise<void> {
    return this.#flushed();
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
    const got = await readEntries(this.#log, ids, this.#avgRecordBytes());
    const out: ScheduledEntry[] = [];
    for (const e of got) if (e !== null) out.push(e);
    return out;
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
        const i = this.#firstIndexAtOrAfter(this.#loadedUntil);
        const next = this.#starts[i];
        if (next === undefined || next > target) {
          this.#loadedUntil = Math.max(this.#loadedUntil, this.#bucketStart(target) + this.#bucketMs);
          break;
        }
        // Synchronously: from here on, adds to this bucket go to the heap directly.
        this.#loadedUntil = next + this.#bucketMs;
        await this.#load(this.#buckets.get(next)!);
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
      await this.#readBucket(b.start, end, (buf, n) => this.#pushEntries(buf, n));
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

  /** Reads entries [BUCKET_HEADER, end) of a bucket file in chunks. A missing file reads as empty. */
  async #readBucket(start: number, end: number, each: (buf: Buffer, n: number) => void): Promise<void> {
    let fd: number;
    try {
      fd = await openFile(`${this.#dir}/${bucketFileName(start)}`, 'r');
    } catch (e) {
      if (isMissing(e)) return;
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

  nextDueAt(): number | null {
    if (this.#live === 0) return null;
    const heap = this.#heap;
    while (heap.size > 0 && (!this.#isLive(heap.topId) || this.#taken.has(heap.topId))) heap.pop();
    let next: number | null = heap.size > 0 ? heap.topDue : null;
    const later = this.#starts[this.#firstIndexAtOrAfter(this.#loadedUntil)];
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
    this.#groupCounts[seg.group(id)]!--;
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
    const gid = this.#groupIds.get(group);
    return gid === undefined ? 0 : this.#groupCounts[gid]!;
  }

  groupCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (let gid = 0; gid < this.#groupNames.length; gid++) {
      const n = this.#groupCounts[gid];
      if (n !== undefined && n > 0) m.set(this.#groupNames[gid]!, n);
    }
    return m;
  }

  /** Walks the bucket files in time order from `fromDueAt`, so far-future entries cost no memory. */
  async browse(opts: BrowseOptions): Promise<ScheduledEntry[]> {
    if (opts.limit <= 0) return [];
    let gid: number | undefined;
    if (opts.group !== undefined) {
      gid = this.#groupIds.get(opts.group);
      if (gid === undefined) return [];
    }
    const from = opts.fromDueAt ?? -Infinity;
    const afterId = opts.afterId ?? -1;
    const firstStart = Number.isFinite(from) ? this.#bucketStart(from) : -Infinity;
    const picked: Array<{ dueAt: number; id: number }> = [];
    const starts = this.#starts.filter((s) => s >= firstStart);
    for (const start of starts) {
      const b = this.#buckets.get(start);
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
      if (b.created) await this.#readBucket(start, end, take);
      found.sort((x, y) => x.dueAt - y.dueAt || x.id - y.id);
      for (const e of found) picked.push(e);
      if (picked.length >= opts.limit) break;
    }
    const ids = picked.slice(0, opts.limit).map((e) => e.id);
    const got = await readEntries(this.#log, ids, this.#avgRecordBytes());
    return got.filter((e): e is ScheduledEntry => e !== null && this.#isLive(e.id));
  }

  /** Memory held by the in-memory index (for tests and stats). */
  memoryStats(): { heapEntries: number; heapBytes: number; taken: number; buckets: number; segments: number } {
    return {
      heapEntries: this.#heap.size,
      heapBytes: this.#heap.capacityBytes,
      taken: this.#taken.size,
      buckets: this.#buckets.size,
      segments: this.#segs.length,
    };
  }

  // ---- the commit round ----

  beginRound(_batch: JournalBatch): Promise<void> | null {
    const groups = this.#groupsPending;
    this.#groupsPending = [];
    const buckets: Array<[TimeBucket, Buffer]> = [];
    for (const b of this.#dirtyBuckets) {
      const data = b.detachPending();
      if (data !== null) buckets.push([b, data]);
    }
    this.#dirtyBuckets.clear();
    // Marks queued before this round wait for it to complete (it carries what the caller
    // appended before done()); marks whose round has completed are written now.
    this.#doneAwaiting = this.#doneQueued;
    this.#doneQueued = [];
    const ready = this.#doneReady;
    this.#doneReady = [];
    if (groups.length === 0 && buckets.length === 0 && ready.length === 0 && !this.#housekeepingDue()) return null;
    return this.#writeRound(groups, buckets, ready);
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
    if (groups.length > 0) {
      if (this.#groupsFd < 0) this.#groupsFd = await openFile(`${this.#dir}/${GROUPS_FILE}`, APPEND_FILE);
      const pos = this.#groupsFileBytes;
      for (const g of groups) this.#groupsFileBytes += g.length;
      await writevAt(this.#groupsFd, groups, pos);
    }
    for (const [b, data] of buckets) {
      const fd = await this.#bucketFd(b);
      if (!b.created) {
        await writevAt(fd, [encodeBucketHeader(b.start), data], 0);
        b.created = true;
      } else {
        await writevAt(fd, [data], BUCKET_HEADER + b.fileBytes);
      }
      b.fileBytes += data.length;
      b.inRound = null;
    }
    if (ready.length > 0) await this.#writeDone(ready);
    await this.#housekeeping();
  }

  async #bucketFd(b: TimeBucket): Promise<number> {
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
    const nfd = await openFile(`${this.#dir}/${bucketFileName(b.start)}`, b.created ? APPEND_FILE : NEW_FILE);
    this.#fds.set(b.start, nfd);
    return nfd;
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
    for (const b of this.#deletableBuckets()) {
      this.#buckets.delete(b.start);
      this.#starts.splice(this.#firstIndexAtOrAfter(b.start), 1);
      const fd = this.#fds.get(b.start);
      if (fd !== undefined) {
        this.#fds.delete(b.start);
        await closeFile(fd);
      }
      await unlink(`${this.#dir}/${bucketFileName(b.start)}`).catch(() => undefined);
    }
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
    if (this.#starts.length === 0 || this.#starts[0]! >= this.#loadedUntil) return out;
    const heap = this.#heap;
    while (heap.size > 0 && !this.#isLive(heap.topId)) heap.pop();
    let min = heap.size > 0 ? heap.topDue : Infinity;
    let takenChecked = false;
    for (const start of this.#starts) {
      if (start >= this.#loadedUntil) break;
      const b = this.#buckets.get(start)!;
      const end = start + this.#bucketMs;
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
    for (const fd of this.#fds.values()) await closeFile(fd);
    this.#fds.clear();
    for (const s of this.#segs) if (s.fd >= 0) await closeFile(s.fd);
    if (this.#groupsFd >= 0) await closeFile(this.#groupsFd);
    this.#groupsFd = -1;
    this.#heap.clear();
  }

  // ---- recovery ----

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
    await mkdir(this.#dir, { recursive: true });
    for (const base of log.segmentBases()) {
      const r = log.segmentRange(base)!;
      this.#segs.push(new ScheduleSegment(base, r.end - base));
    }
    this.#records = log.nextOffset - log.startOffset;
    this.#recordBytes = log.sizeBytes;
    await this.#loadDoneMarks(report);
    await this.#loadGroups();

    // Every pending entry due before loadedUntil goes to the heap as the index is read.
    this.#loadedUntil = this.#bucketStart(this.#clock.now() + this.#preloadMs) + this.#bucketMs;
    const seen = new Map<ScheduleSegment, Uint8Array>();
    for (const s of this.#segs) seen.set(s, new Uint8Array((s.count + 7) >>> 3));
    const names = (await readdir(this.#dir)).sort();
    for (const n of names) {
      if (n.endsWith('.tmp')) {
        await rm(`${this.#dir}/${n}`, { force: true });
        continue;
      }
      const start = parseBucketFileName(n);
      if (start !== null) await this.#recoverBucket(start, seen, report);
    }
    // Live ids no bucket entry named: the crash's tail, or a lost index. Read them back.
    for (const seg of this.#segs) {
      const bits = seen.get(seg)!;
      let rel = 0;
      while (rel < seg.count) {
        const isMissing = (r: number): boolean => (bits[r >>> 3]! & (1 << (r & 7))) === 0 && !seg.isDone(seg.base + r);
        if (!isMissing(rel)) {
          rel++;
          continue;
        }
        let end = rel + 1;
        while (end < seg.count && isMissing(end)) end++;
        report.reindexed += await this.#reindex(seg, seg.base + rel, seg.base + end);
        rel = end;
      }
    }
    for (const seg of this.#reclaimable()) if (await this.#reclaim(seg)) report.reclaimedSegments++;
    if (this.#groupsPending.length > 0 || this.#dirtyBuckets.size > 0) this.#committer.markDirty(this);
    report.pending = this.#live;
    report.durationMs = Date.now() - started;
    return report;
  }

  async #loadDoneMarks(report: ScheduleRecoveryReport): Promise<void> {
    for (const n of await readdir(this.#log.dir)) {
      const base = parseDoneFileName(n);
      if (base === null) continue;
      const path = `${this.#log.dir}/${n}`;
      const seg = this.#segs.find((s) => s.base === base);
      if (seg === undefined) {
        await unlink(path); // its segment is gone: every entry in it was done
        continue;
      }
      const fd = await openFile(path, 'r');
      try {
        const chunk = Buffer.allocUnsafe(READ_CHUNK);
        let pos = 0;
        for (;;) {
          const got = await readAt(fd, chunk, 0, chunk.length, pos);
          const whole = got - (got % 4);
          for (let p = 0; p < whole; p += 4) {
            const rel = chunk.readUInt32LE(p);
            if (rel >= seg.count) report.orphanDoneMarks++;
            else seg.mark(base + rel);
          }
          pos += whole;
          if (got < chunk.length) break;
        }
        // A torn last mark is overwritten by the next one (marks are written at fileBytes).
        seg.fileBytes = pos;
      } finally {
        await closeFile(fd);
      }
      seg.doneWritten = seg.done;
    }
  }

  async #loadGroups(): Promise<void> {
    const path = `${this.#dir}/${GROUPS_FILE}`;
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if (isMissing(e)) return;
      throw e;
    }
    const { names, validBytes } = parseGroups(data);
    if (validBytes < data.length) await truncate(path, validBytes);
    this.#groupsFileBytes = validBytes;
    // Ids lost with a torn tail leave holes (undefined); new groups take ids after the highest.
    for (const [gid, name] of names) this.#setGroup(gid, name, Buffer.from(name, 'utf8'));
  }

  /**
   * Reads one bucket file into the counts and, for entries due before loadedUntil, the heap.
   * Entries that cannot be trusted are dropped and the file rewritten without them; their
   * ids, if live, are then missing and get read back from the log.
   */
  async #recoverBucket(start: number, seen: Map<ScheduleSegment, Uint8Array>, report: ScheduleRecoveryReport): Promise<void> {
    const name = bucketFileName(start);
    const path = `${this.#dir}/${name}`;
    const fd = await openFile(path, 'r');
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let dropped = 0;
    let headerOk = false;
    try {
      const hdr = Buffer.allocUnsafe(BUCKET_HEADER);
      const hn = await readAt(fd, hdr, 0, BUCKET_HEADER, 0);
      headerOk = hn === BUCKET_HEADER && checkBucketHeader(hdr, start) && start % this.#bucketMs === 0;
      if (headerOk) {
        const buf = Buffer.allocUnsafe(READ_CHUNK);
        for (let pos = BUCKET_HEADER; ; ) {
          const n = await readAt(fd, buf, 0, buf.length, pos);
          const whole = n - (n % BUCKET_ENTRY);
          let runStart = 0;
          for (let p = 0; p < whole; p += BUCKET_ENTRY) {
            if (this.#admit(buf, p, start, seen)) continue;
            dropped++;
            if (p > runStart) kept.push(Buffer.from(buf.subarray(runStart, p)));
            keptBytes += p - runStart;
            runStart = p + BUCKET_ENTRY;
          }
          if (whole > runStart) kept.push(Buffer.from(buf.subarray(runStart, whole)));
          keptBytes += whole - runStart;
          pos += whole;
          if (n < buf.length) break;
        }
      }
    } finally {
      await closeFile(fd);
    }
    if (!headerOk || dropped > 0) {
      report.droppedIndexEntries += dropped;
      report.repairedBuckets.push(name);
      if (!headerOk || keptBytes === 0) {
        await unlink(path);
        return;
      }
      await writeFileAtomic(this.#dir, name, Buffer.concat([encodeBucketHeader(start), ...kept]));
    }
    const b = this.#bucket(start);
    b.created = true;
    b.fileBytes = keptBytes;
  }

  /** Takes one bucket entry at recovery; false if it must be dropped from the file. */
  #admit(buf: Buffer, p: number, start: number, seen: Map<ScheduleSegment, Uint8Array>): boolean {
    if (!bucketEntryValid(buf, p)) return false;
    const dueAt = entryDueAt(buf, p);
    const id = entryId(buf, p);
    const gid = entryGroup(buf, p);
    if (this.#bucketStart(dueAt) !== start) return false;
    if (id >= this.#log.nextOffset) return false; // the log's tail was cut: this id will be reused
    const seg = this.#segmentOf(id);
    if (seg === null) return true; // its segment was reclaimed: done, harmless until the file goes
    if (this.#groupNames[gid] === undefined) return false; // its name was lost with the groups file's tail
    const bits = seen.get(seg)!;
    const rel = id - seg.base;
    const m = 1 << (rel & 7);
    if ((bits[rel >>> 3]! & m) !== 0) return false; // duplicate
    bits[rel >>> 3] = bits[rel >>> 3]! | m;
    if (seg.isDone(id)) return true;
    seg.setGroup(id, gid);
    this.#groupCounts[gid]!++;
    this.#live++;
    if (dueAt < this.#loadedUntil) this.#heap.push(dueAt, id);
    return true;
  }

  /** Reads ids [from, to) back from the log and indexes the live ones; returns how many. */
  async #reindex(seg: ScheduleSegment, from: number, to: number): Promise<number> {
    let n = 0;
    let off = from;
    while (off < to) {
      const recs = await this.#log.readBatch(off, 256 * 1024, to - off);
      if (recs.length === 0) break;
      for (const r of recs) {
        if (r.offset >= to) break;
        if (seg.isDone(r.offset)) continue;
        const e = decodeEntry(r);
        const gid = this.#groupId(e.group);
        seg.setGroup(r.offset, gid);
        this.#groupCounts[gid]!++;
        this.#live++;
        this.#index(e.dueAt, r.offset, gid);
        n++;
      }
      off = recs[recs.length - 1]!.offset + 1;
    }
    return n;
  }
}

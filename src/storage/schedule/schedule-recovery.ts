/**
 * Opening a schedule after a crash: the done marks, the groups file and the bucket files are
 * read and checked against the log, which is the truth (crash ordering in
 * file-schedule-store.ts). Bucket entries that cannot be trusted are dropped and their file
 * rewritten without them; live ids that no bucket entry names are read back from the log and
 * indexed again. What was dropped or rebuilt goes into the report instead of an error.
 */
import { mkdir, readdir, rm, unlink } from 'node:fs/promises';
import { closeFile, openFile, readAt, writeFileAtomic } from '../io.js';
import type { SegmentLog } from '../log/segment-log.js';
import { decodeEntry } from './schedule-record.js';
import type { ScheduleGroups } from './schedule-groups.js';
import { parseDoneFileName, type ScheduleSegment } from './schedule-segment.js';
import {
  BUCKET_ENTRY,
  BUCKET_HEADER,
  bucketEntryValid,
  bucketFileName,
  checkBucketHeader,
  encodeBucketHeader,
  entryDueAt,
  entryGroup,
  entryId,
  parseBucketFileName,
} from './time-bucket.js';
import { READ_CHUNK, type TimeIndex } from './time-index.js';

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

/** The store being opened, as recovery sees it. */
export interface RecoveryTarget {
  readonly log: SegmentLog;
  /** One per segment of the log, counts set, nothing marked done yet. */
  readonly segs: readonly ScheduleSegment[];
  readonly groups: ScheduleGroups;
  readonly time: TimeIndex;
  segmentOf(id: number): ScheduleSegment | null;
  /** A live entry a bucket file names: counted, and into the heap if due before loadedUntil. */
  adopt(seg: ScheduleSegment, dueAt: number, id: number, gid: number): void;
  /** A live entry no bucket file named: counted and indexed again, as by add(). */
  reindex(seg: ScheduleSegment, dueAt: number, id: number, gid: number): void;
}

export class ScheduleRecovery {
  readonly #t: RecoveryTarget;
  readonly #report: ScheduleRecoveryReport;
  /** Per segment, one bit per entry: named by a bucket entry already. */
  readonly #seen = new Map<ScheduleSegment, Uint8Array>();

  constructor(target: RecoveryTarget, report: ScheduleRecoveryReport) {
    this.#t = target;
    this.#report = report;
  }

  /** Loads the done marks and the groups file. Before the bucket files: they depend on both. */
  async loadMarksAndGroups(): Promise<void> {
    await mkdir(this.#t.time.dir, { recursive: true });
    await this.#loadDoneMarks();
    await this.#t.groups.load();
  }

  /** Reads every bucket file, then reindexes what none of them named. */
  async rebuildIndex(): Promise<void> {
    const dir = this.#t.time.dir;
    for (const s of this.#t.segs) this.#seen.set(s, new Uint8Array((s.count + 7) >>> 3));
    const names = (await readdir(dir)).sort();
    for (const n of names) {
      if (n.endsWith('.tmp')) {
        await rm(`${dir}/${n}`, { force: true });
        continue;
      }
      const start = parseBucketFileName(n);
      if (start !== null) await this.#recoverBucket(start);
    }
    // Live ids no bucket entry named: the crash's tail, or a lost index. Read them back.
    for (const seg of this.#t.segs) {
      const bits = this.#seen.get(seg)!;
      let rel = 0;
      while (rel < seg.count) {
        const isMissing = (r: number): boolean => (bits[r >>> 3]! & (1 << (r & 7))) === 0 && !seg.isDone(seg.base + r);
        if (!isMissing(rel)) {
          rel++;
          continue;
        }
        let end = rel + 1;
        while (end < seg.count && isMissing(end)) end++;
        this.#report.reindexed += await this.#reindex(seg, seg.base + rel, seg.base + end);
        rel = end;
      }
    }
  }

  async #loadDoneMarks(): Promise<void> {
    const dir = this.#t.log.dir;
    for (const n of await readdir(dir)) {
      const base = parseDoneFileName(n);
      if (base === null) continue;
      const path = `${dir}/${n}`;
      const seg = this.#t.segs.find((s) => s.base === base);
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
            if (rel >= seg.count) this.#report.orphanDoneMarks++;
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

  /**
   * Reads one bucket file into the counts and, for entries due before loadedUntil, the heap.
   * Entries that cannot be trusted are dropped and the file rewritten without them; their
   * ids, if live, are then missing and get read back from the log.
   */
  async #recoverBucket(start: number): Promise<void> {
    const time = this.#t.time;
    const name = bucketFileName(start);
    const path = `${time.dir}/${name}`;
    const fd = await openFile(path, 'r');
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let dropped = 0;
    let headerOk = false;
    try {
      const hdr = Buffer.allocUnsafe(BUCKET_HEADER);
      const hn = await readAt(fd, hdr, 0, BUCKET_HEADER, 0);
      headerOk = hn === BUCKET_HEADER && checkBucketHeader(hdr, start) && start % time.bucketMs === 0;
      if (headerOk) {
        const buf = Buffer.allocUnsafe(READ_CHUNK);
        for (let pos = BUCKET_HEADER; ; ) {
          const n = await readAt(fd, buf, 0, buf.length, pos);
          const whole = n - (n % BUCKET_ENTRY);
          let runStart = 0;
          for (let p = 0; p < whole; p += BUCKET_ENTRY) {
            if (this.#admit(buf, p, start)) continue;
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
      this.#report.droppedIndexEntries += dropped;
      this.#report.repairedBuckets.push(name);
      if (!headerOk || keptBytes === 0) {
        await unlink(path);
        return;
      }
      await writeFileAtomic(time.dir, name, Buffer.concat([encodeBucketHeader(start), ...kept]));
    }
    const b = time.bucket(start);
    b.created = true;
    b.fileBytes = keptBytes;
  }

  /** Takes one bucket entry at recovery; false if it must be dropped from the file. */
  #admit(buf: Buffer, p: number, start: number): boolean {
    const t = this.#t;
    if (!bucketEntryValid(buf, p)) return false;
    const dueAt = entryDueAt(buf, p);
    const id = entryId(buf, p);
    const gid = entryGroup(buf, p);
    if (t.time.bucketStart(dueAt) !== start) return false;
    if (id >= t.log.nextOffset) return false; // the log's tail was cut: this id will be reused
    const seg = t.segmentOf(id);
    if (seg === null) return true; // its segment was reclaimed: done, harmless until the file goes
    if (!t.groups.has(gid)) return false; // its name was lost with the groups file's tail
    const bits = this.#seen.get(seg)!;
    const rel = id - seg.base;
    const m = 1 << (rel & 7);
    if ((bits[rel >>> 3]! & m) !== 0) return false; // duplicate
    bits[rel >>> 3] = bits[rel >>> 3]! | m;
    if (seg.isDone(id)) return true;
    t.adopt(seg, dueAt, id, gid);
    return true;
  }

  /** Reads ids [from, to) back from the log and indexes the live ones; returns how many. */
  async #reindex(seg: ScheduleSegment, from: number, to: number): Promise<number> {
    const t = this.#t;
    let n = 0;
    let off = from;
    while (off < to) {
      const recs = await t.log.readBatch(off, 256 * 1024, to - off);
      if (recs.length === 0) break;
      for (const r of recs) {
        if (r.offset >= to) break;
        if (seg.isDone(r.offset)) continue;
        const e = decodeEntry(r);
        t.reindex(seg, e.dueAt, r.offset, t.groups.idOf(e.group));
        n++;
      }
      off = recs[recs.length - 1]!.offset + 1;
    }
    return n;
  }
}

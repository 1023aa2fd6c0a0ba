/**
 * A queue stored in a SegmentLog (8 MiB segments, larger for large messages: storage.ts), with
 * one ack file per segment and a bounded in-memory window of ready messages.
 *
 * Memory: ready messages live in the log (page cache). The heap holds per-segment ack bitmaps
 * (one bit per message, allocated on first ack), the refs of requeued messages, and a window
 * of at most `memoryWindowBytes` of ready payloads, so queue depth does not grow the heap
 * with bodies (research §5.3, finding 6).
 *
 * Order: everything below #diskCursor was loaded into the window, handed out, or acked.
 * Requeued refs are older than anything in the window, so they go out first, which puts
 * them back at their original position.
 *
 * Large messages (RETAIN_MIN_BYTES and up) are written from the publisher's buffer, and are
 * the log's held records (segment-log.ts): when a round starts, one that is already acked is
 * elided (never written: the consumer has it, so it is gone, and its confirm goes out anyway, as
 * RabbitMQ's message store does), and one a consumer holds waits up to `elideWaitMs` for its
 * ack before it is written. So does one ready in the window while consumers hold deliveries
 * (the window then takes at least WINDOW_MIN_MESSAGES): it is probably next. Any other is
 * written at once: with no consumer at work, a publisher's confirms are not delayed.
 *
 * Crash ordering for elided messages: an ack is written in the round after it happens, and the
 * ELIDED record in the same round or, behind another held record, a later one. An ack whose
 * record never got written is an orphan, dropped at open (below). A record found ELIDED with no
 * ack (kill -9 between the two writes, or an ack file not on disk at a power loss) is acked at
 * open when recovery scanned it (takeElidedAtOpen), otherwise when a read meets it; it is never
 * delivered.
 */
import { constants } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { closeFile, openFile, writeFileAtomic, writevAtSync } from '../io.js';
import type { GroupCommitter, RoundDone, RoundParticipant } from '../durability/group-commit.js';
import type { JournalBatch } from '../durability/journal.js';
import { RecordType } from '../log/record.js';
import { Placement, type PlacementValue, type SegmentLog } from '../log/segment-log.js';
import { ackFileName, SegmentAcks } from './ack-file.js';
import { DeliveredMark } from './delivered-mark.js';
import { RequeueCounts } from './requeue-counts.js';
import type { QueueStore, QueueStoreStats, StoredMessage } from './queue-store.js';

export interface QueueStoreOptions {
  /** Upper bound on ready payload bytes kept in memory. */
  memoryWindowBytes?: number;
  /**
   * Bytes read from disk per fill(); with large messages, enough for FILL_MIN_RECORDS of them
   * (up to FILL_MAX_BYTES), so that a consumer behind the publisher is not fed one read at a time.
   */
  readAheadBytes?: number;
  /**
   * How long a large message that a consumer holds may wait for its ack before it is written
   * anyway; it delays publisher confirms by as much when the ack is late. 0: always write.
   */
  elideWaitMs?: number;
}

/** Default of QueueStoreOptions.elideWaitMs. */
const ELIDE_WAIT_MS = 20;
/**
 * While consumers hold deliveries, the window takes at least this many messages whatever their
 * size, so that large messages published a little ahead of the consumers are handed out from
 * memory (and, acked before their hold ends, never written) rather than written and read back.
 */
const WINDOW_MIN_MESSAGES = 16;
const FILL_MIN_RECORDS = 8;
const FILL_MAX_BYTES = 8 * 1024 * 1024;

export interface QueueRecoveryReport {
  queue: string;
  /** Acks naming a message past the end of its segment (LavinMQ prune_orphaned_acks). */
  orphanAcks: number;
  /** Fully acked segments deleted on open. */
  reclaimedSegments: number;
}

export class FileQueueStore implements QueueStore, RoundParticipant {
  readonly name: string;
  readonly #log: SegmentLog;
  readonly #committer: GroupCommitter;
  readonly #windowBytes: number;
  readonly #readAhead: number;
  /** The largest payload of the last fill (sizes the next one). */
  #fillRecordBytes = 0;
  #acks = new Map<number, SegmentAcks>();
  /** Segment bases in order, parallel to the log's segments. */
  #bases: number[] = [];
  #live = 0;
  #unacked = 0;
  #diskCursor: number;
  #window: StoredMessage[] = [];
  #windowHead = 0;
  #windowSize = 0;
  #requeued: number[] = [];
  #requeuedLoaded = new Map<number, StoredMessage>();
  /** Refs handed out by shift() and not yet acked or requeued (bounded by prefetch). */
  #handedOut = new Set<number>();
  /** Fully acked segments waiting for their records to be written before they can go. */
  #reclaimWaiting = new Set<number>();
  #filling: Promise<void> | null = null;
  #dirtyAcks: SegmentAcks[] = [];
  #reclaimable: number[] = [];
  #closed = false;
  readonly #delivered: DeliveredMark;
  #requeues!: RequeueCounts;

  private constructor(log: SegmentLog, committer: GroupCommitter, opts: QueueStoreOptions) {
    this.name = log.name;
    this.#log = log;
    this.#committer = committer;
    this.#windowBytes = opts.memoryWindowBytes ?? 1024 * 1024;
    this.#readAhead = opts.readAheadBytes ?? 256 * 1024;
    this.#diskCursor = log.startOffset;
    this.#delivered = new DeliveredMark(log.dir, log.nextOffset);
  }

  static async open(
    log: SegmentLog,
    committer: GroupCommitter,
    opts: QueueStoreOptions = {},
  ): Promise<{ store: FileQueueStore; report: QueueRecoveryReport }> {
    const q = new FileQueueStore(log, committer, opts);
    const report: QueueRecoveryReport = { queue: log.name, orphanAcks: 0, reclaimedSegments: 0 };
    const bases = log.segmentBases();
    for (const base of bases) {
      const range = log.segmentRange(base);
      const acks = new SegmentAcks(base);
      acks.count = range ? range.end - base : 0;
      q.#acks.set(base, acks);
      q.#bases.push(base);
    }
    const ackNames = (await readdir(log.dir)).filter((n) => n.endsWith('.acks'));
    for (const n of ackNames) {
      const base = Number(n.slice(0, 20));
      const acks = q.#acks.get(base);
      const path = `${log.dir}/${n}`;
      if (acks === undefined) {
        await unlink(path); // the segment is gone: its acks are moot
        continue;
      }
      const data = await readFile(path);
      const whole = data.length - (data.length % 4);
      let orphans = 0;
      for (let p = 0; p < whole; p += 4) {
        const rel = data.readUInt32LE(p);
        if (rel >= acks.count) orphans++;
        else acks.mark(base + rel);
      }
      acks.fileBytes = whole;
      if (orphans > 0 || whole !== data.length) {
        // Rewrite without the orphans (and without a torn last entry): the segment may grow
        // again, and an orphan left in the file would then ack a new message at the next open.
        const keep = Buffer.allocUnsafe(whole - orphans * 4);
        let k = 0;
        for (let p = 0; p < whole; p += 4) {
          const rel = data.readUInt32LE(p);
          if (rel < acks.count) k = keep.writeUInt32LE(rel, k);
        }
        await writeFileAtomic(log.dir, n, keep);
        acks.fileBytes = keep.length;
        report.orphanAcks += orphans;
      }
    }
    q.#requeues = new RequeueCounts(log.dir, (ref) => ref >= log.startOffset && ref < log.nextOffset && !q.#isAcked(ref));
    for (const acks of q.#acks.values()) q.#live += acks.count - acks.acked;
    // Released before a crash that lost the ack (see the file comment): ack them now.
    for (const ref of log.takeElidedAtOpen()) q.#markAcked(ref);
    const wait = opts.elideWaitMs ?? ELIDE_WAIT_MS;
    if (wait > 0) log.setWriteGate(q.#gate, wait);
    // Segments fully acked before the crash can go now.
    for (const base of bases) {
      const acks = q.#acks.get(base)!;
      const range = log.segmentRange(base);
      if (acks.complete && range?.sealed) {
        if (await q.#reclaim(base)) report.reclaimedSegments++;
      }
    }
    q.#diskCursor = log.startOffset;
    return { store: q, report };
  }

  get readyCount(): number {
    return this.#live - this.#unacked;
  }
  get unackedCount(): number {
    return this.#unacked;
  }

  enqueue(payload: Buffer, ts: number = Date.now(), flags = 0): number {
    const caughtUp = this.#diskCursor === this.#log.nextOffset;
    const ref = this.#log.appendRetained(payload, ts, flags);
    const base = this.#baseOf(ref, true);
    this.#acks.get(base)!.count++;
    this.#live++;
    if (caughtUp && (this.#windowSize < this.#windowBytes || (this.#handedOut.size > 0 && this.#window.length - this.#windowHead < WINDOW_MIN_MESSAGES))) {
      this.#window.push({ ref, payload, ts, flags, redelivered: false });
      this.#windowSize += payload.length;
      this.#diskCursor = ref + 1;
    }
    return ref;
  }

  flushed(): Promise<void> {
    return this.#log.flushed();
  }

  /** The log's write gate (see the file comment). */
  readonly #gate = (ref: number): PlacementValue => {
    if (this.#isAcked(ref)) return Placement.ELIDE;
    if (this.#handedOut.has(ref)) return Placement.HOLD;
    // Ready in the window while consumers work through their deliveries: likely theirs soon.
    // Not a requeued one (it is read back from the log) nor one only on disk (fill() reads it).
    if (this.#handedOut.size > 0 && ref < this.#diskCursor && !this.#requeued.includes(ref)) return Placement.HOLD;
    return Placement.WRITE;
  };

  /** Base of the segment holding `ref`; with `appended`, notes a new segment if the log rolled. */
  #baseOf(ref: number, appended = false): number {
    if (appended) {
      const last = this.#bases[this.#bases.length - 1];
      const range = this.#log.segmentRange(ref);
      const base = range ? range.base : ref;
      if (last !== base) {
        this.#bases.push(base);
        this.#acks.set(base, new SegmentAcks(base));
        // The previous segment is now sealed; it may already be fully acked.
        if (last !== undefined && this.#acks.get(last)!.complete) {
          this.#reclaimable.push(last);
          this.#committer.markDirty(this);
        }
      }
      return base;
    }
    const b = this.#bases;
    let lo = 0;
    let hi = b.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (b[mid]! <= ref) lo = mid;
      else hi = mid - 1;
    }
    return b[lo]!;
  }

  shift(): StoredMessage | null {
    if (this.#requeued.length > 0) {
      const ref = this.#requeued[0]!;
      const m = this.#requeuedLoaded.get(ref);
      if (m === undefined) return null;
      this.#requeued.shift();
      this.#requeuedLoaded.delete(ref);
      this.#unacked++;
      this.#handedOut.add(ref);
      return m;
    }
    while (this.#windowHead < this.#window.length) {
      const m = this.#window[this.#windowHead]!;
      this.#window[this.#windowHead++] = undefined as unknown as StoredMessage;
      this.#windowSize -= m.payload.length;
      if (this.#windowHead > 1024 && this.#windowHead * 2 > this.#window.length) {
        this.#window = this.#window.slice(this.#windowHead);
        this.#windowHead = 0;
      }
      if (this.#isAcked(m.ref)) continue; // discarded while waiting
      this.#delivered.delivering(m.ref);
      this.#unacked++;
      this.#handedOut.add(m.ref);
      return m;
    }
    return null;
  }

  peek(): StoredMessage | null {
    if (this.#requeued.length > 0) return this.#requeuedLoaded.get(this.#requeued[0]!) ?? null;
    while (this.#windowHead < this.#window.length) {
      const m = this.#window[this.#windowHead]!;
      if (!this.#isAcked(m.ref)) return m;
      // Discarded while waiting: drop it now, as shift() would.
      this.#window[this.#windowHead++] = undefined as unknown as StoredMessage;
      this.#windowSize -= m.payload.length;
    }
    return null;
  }

  async forEachInTail(windowMs: number, fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    let lo = this.#log.startOffset;
    let hi = this.#log.nextOffset;
    if (lo >= hi) return;
    const last = await this.#log.read(hi - 1);
    if (last === null) return;
    const sinceTs = last.ts - windowMs;
    // Binary search for the first record at or after sinceTs, then read forward.
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const r = await this.#log.read(mid);
      if (r === null || r.ts < sinceTs) lo = mid + 1;
      else hi = mid;
    }
    await this.#scan(lo, fn);
  }

  forEachReady(fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    return this.#scan(this.#log.startOffset, (payload, ref, flags) => {
      if (!this.#isAcked(ref) && !this.#handedOut.has(ref)) fn(payload, ref, flags);
    });
  }

  /** Reads every record from `from` to the current end of the log. */
  async #scan(from: number, fn: (payload: Buffer, ref: number, flags: number) => void): Promise<void> {
    const end = this.#log.nextOffset;
    while (from < end) {
      const recs = await this.#log.readBatch(from, this.#readAhead);
      if (recs.length === 0) break;
      for (const r of recs) {
        if (r.offset >= end) return;
        from = r.offset + 1;
        if (r.type !== RecordType.ELIDED) fn(r.payload, r.offset, r.flags);
      }
    }
  }

  #isAcked(ref: number): boolean {
    const acks = this.#acks.get(this.#baseOf(ref));
    return acks === undefined || acks.isAcked(ref);
  }

  fill(): Promise<void> {
    if (this.#filling === null) {
      this.#filling = this.#fill().finally(() => {
        this.#filling = null;
      });
    }
    return this.#filling;
  }

  async #fill(): Promise<void> {
    if (this.#requeued.length > 0) {
      const todo = this.#requeued.slice(0, 256).filter((r) => !this.#requeuedLoaded.has(r));
      const msgs = await Promise.all(todo.map((r) => this.#log.read(r)));
      for (let i = 0; i < todo.length; i++) {
        const rec = msgs[i];
        const ref = todo[i]!;
        if (rec && rec.type !== RecordType.ELIDED) this.#requeuedLoaded.set(ref, { ref, payload: rec.payload, ts: rec.ts, flags: rec.flags, redelivered: true });
        else this.#requeued = this.#requeued.filter((x) => x !== ref); // gone (purged meanwhile)
      }
      return;
    }
    if (this.#windowHead < this.#window.length) return;
    while (this.#diskCursor < this.#log.nextOffset) {
      const from = this.#diskCursor;
      const recs = await this.#log.readBatch(from, Math.max(this.#readAhead, Math.min(FILL_MAX_BYTES, this.#fillRecordBytes * FILL_MIN_RECORDS)));
      if (recs.length === 0) {
        this.#diskCursor = this.#log.nextOffset;
        return;
      }
      let largest = 0;
      for (const r of recs) if (r.payload.length > largest) largest = r.payload.length;
      this.#fillRecordBytes = largest;
      // Another enqueue may have moved the cursor while reading; keep only what is still ahead.
      let added = 0;
      for (const r of recs) {
        if (r.offset < this.#diskCursor) continue;
        this.#diskCursor = r.offset + 1;
        if (this.#isAcked(r.offset)) continue;
        if (r.type === RecordType.ELIDED) {
          this.#markAcked(r.offset); // its ack was lost in a crash
          continue;
        }
        this.#window.push({ ref: r.offset, payload: r.payload, ts: r.ts, flags: r.flags, redelivered: r.offset < this.#delivered.recovered });
        this.#windowSize += r.payload.length;
        added++;
      }
      if (added > 0) return;
    }
  }

  ack(ref: number): void {
    // Only a handed-out message: a second ack, or an ack of a ref never delivered, is a no-op.
    if (!this.#handedOut.delete(ref)) return;
    this.#unacked--;
    this.#markAcked(ref);
  }

  discard(ref: number): boolean {
    if (this.#handedOut.has(ref)) return false; // not ready: the consumer has it
    if (!this.#markAcked(ref)) return false;
    const i = this.#requeued.indexOf(ref);
    if (i >= 0) {
      // A requeued message is ready too; it must not be handed out again.
      this.#requeued.splice(i, 1);
      this.#requeuedLoaded.delete(ref);
    }
    return true;
  }

  #markAcked(ref: number): boolean {
    const base = this.#baseOf(ref);
    const acks = this.#acks.get(base);
    if (acks === undefined || ref < base || !acks.mark(ref)) return false;
    this.#live--;
    this.#requeues.forget(ref);
    acks.pending.push(ref - base);
    if (acks.pending.length === 1) this.#dirtyAcks.push(acks);
    if (acks.complete && this.#bases[this.#bases.length - 1] !== base) this.#reclaimable.push(base);
    this.#committer.markDirty(this);
    // It may be held: elide it in this very round rather than when its hold runs out.
    this.#log.reconsiderHeld();
    return true;
  }

  requeue(ref: number, count?: number): void {
    // Only a handed-out message: requeueing twice must not deliver it twice.
    if (!this.#handedOut.delete(ref)) return;
    if (count !== undefined) this.#requeues.set(ref, count);
    this.#unacked--;
    this.#log.reconsiderHeld(); // back in the queue: no reason to hold it any more
    // Keep sorted: usually appended at the end or near it.
    let i = this.#requeued.length;
    while (i > 0 && this.#requeued[i - 1]! > ref) i--;
    this.#requeued.splice(i, 0, ref);
  }

  requeueCount(ref: number): number {
    return this.#requeues.get(ref);
  }

  async read(ref: number): Promise<StoredMessage | null> {
    if (this.#isAcked(ref)) return null;
    const rec = await this.#log.read(ref);
    if (rec === null || rec.type === RecordType.ELIDED) return null;
    return { ref, payload: rec.payload, ts: rec.ts, flags: rec.flags, redelivered: ref < this.#delivered.recovered };
  }

  purge(): number {
    let n = 0;
    for (const ref of this.#requeued) if (this.#markAcked(ref)) n++;
    this.#requeued = [];
    this.#requeuedLoaded.clear();
    for (let i = this.#windowHead; i < this.#window.length; i++) if (this.#markAcked(this.#window[i]!.ref)) n++;
    this.#window = [];
    this.#windowHead = 0;
    this.#windowSize = 0;
    for (let ref = this.#diskCursor; ref < this.#log.nextOffset; ref++) if (this.#markAcked(ref)) n++;
    this.#diskCursor = this.#log.nextOffset;
    return n;
  }

  stats(): QueueStoreStats {
    return {
      live: this.#live,
      ready: this.readyCount,
      unacked: this.#unacked,
      buffered: this.#window.length - this.#windowHead,
      segments: this.#bases.length,
    };
  }

  // RoundParticipant: append pending acks to their files; no journal entry, no fsync.
  beginRound(_batch: JournalBatch, _direct: boolean, done: RoundDone): boolean {
    const dirty = this.#dirtyAcks;
    this.#dirtyAcks = [];
    const reclaim = this.#reclaimable;
    this.#reclaimable = [];
    if (dirty.length === 0 && reclaim.length === 0) return false;
    // The common case, ack files open and nothing to reclaim, is done here (errors throw to the round).
    if (reclaim.length === 0 && allOpen(dirty)) {
      for (const acks of dirty) this.#appendAcks(acks);
      return false;
    }
    this.#writeAcks(dirty, reclaim).then(() => done(null), done);
    return true;
  }

  async #writeAcks(dirty: SegmentAcks[], reclaim: number[]): Promise<void> {
    for (const acks of dirty) {
      if (acks.fd < 0 && acks.pending.length > 0 && this.#acks.has(acks.base)) {
        acks.fd = await openFile(`${this.#log.dir}/${ackFileName(acks.base)}`, constants.O_WRONLY | constants.O_CREAT);
      }
      this.#appendAcks(acks);
    }
    for (const base of reclaim) await this.#reclaim(base);
  }

  /** Appends the pending acks of one segment to its (open) ack file. */
  #appendAcks(acks: SegmentAcks): void {
    const list = acks.pending;
    acks.pending = [];
    if (list.length === 0 || !this.#acks.has(acks.base)) return;
    const buf = Buffer.allocUnsafe(list.length * 4);
    for (let i = 0; i < list.length; i++) buf.writeUInt32LE(list[i]!, i * 4);
    // Not O_APPEND: with it Linux ignores the position, and a torn entry left by a crash
    // would shift every later one. Writing at fileBytes overwrites such a tail instead.
    const pos = acks.fileBytes;
    acks.fileBytes += buf.length;
    // A few bytes into the page cache: inline beats a thread-pool round trip, which under CPU
    // contention waits for a pool thread to be scheduled while confirms wait on the round.
    writevAtSync(acks.fd, [buf], pos);
  }

  endRound(_err: Error | null): void {}

  /** Deletes a fully acked sealed segment with its ack file. */
  async #reclaim(base: number): Promise<boolean> {
    const acks = this.#acks.get(base);
    if (acks === undefined || !acks.complete) return false;
    const range = this.#log.segmentRange(base);
    if (range !== null && range.end > this.#log.writtenOffset) {
      // Acked before its records were written (possibly in this very round): try again once
      // they are, rather than forget the segment until the next restart.
      if (!this.#reclaimWaiting.has(base)) {
        this.#reclaimWaiting.add(base);
        void this.#log.waitForOffset(range.end - 1).then(() => {
          this.#reclaimWaiting.delete(base);
          this.#reclaimable.push(base);
          this.#committer.markDirty(this);
        });
      }
      return false;
    }
    if (!(await this.#log.removeSegment(base))) return false;
    this.#acks.delete(base);
    this.#bases = this.#bases.filter((b) => b !== base);
    if (acks.fd >= 0) await closeFile(acks.fd);
    await unlink(`${this.#log.dir}/${ackFileName(base)}`).catch(() => undefined);
    return true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Whatever is held is written now: the log outlives this store (until the queue is deleted).
    this.#log.setWriteGate(null);
    await this.#committer.settled();
    for (const acks of this.#acks.values()) if (acks.fd >= 0) await closeFile(acks.fd);
    this.#delivered.close();
    this.#requeues.close();
  }
}

function allOpen(acks: SegmentAcks[]): boolean {
  for (const a of acks) if (a.fd < 0) return false;
  return true;
}

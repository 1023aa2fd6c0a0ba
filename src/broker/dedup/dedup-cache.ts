/**
 * A bounded, persistent set of deduplication keys (rabbitmq-message-deduplication's cache,
 * kept on disk). seen() answers "duplicate?" and records the key when it is not; keys expire
 * after a TTL and the oldest inserted ones are evicted beyond `size`, so memory holds at most
 * `size` keys.
 *
 * Log (one SegmentLog per cache, durability fsync), one record per change, in order:
 *
 *   insert     flags 0          payload: u64 expiresAt (ms since the epoch, 0 = never) | key (UTF-8)
 *   tombstone  flags TOMBSTONE  payload: key (UTF-8)
 *
 * Opening replays the log with the same rules seen() applies (an insert replaces an earlier
 * entry of its key and goes to the back; a tombstone removes it; beyond `size` the front is
 * evicted), so the replayed map is the map the process had, as far as its records reached
 * the disk. Evictions and expiries need no record: replay makes the same decisions.
 *
 * Invariant: the map's order is the log's order. Every record that makes an entry live is
 * appended at the tail and the entry moved to the back of the map (inserts, and rewrites of
 * old entries, below), so the entries pointing into the oldest segment are a prefix of the
 * map, and size evictions empty the oldest segment first.
 *
 * Reclaiming space: only whole segments go, and only the oldest (the head), once no live
 * entry points into it. Removing only a prefix of the log keeps replay exact: a tombstone is
 * always in the same or a later segment than the insert it cancels, so it can never be
 * removed while that insert stays. When the head is pinned by a few long-lived entries while
 * the rest of the log is mostly dead (forgotten, expired, superseded), those entries are
 * re-appended at the tail and the head is removed.
 *
 * Crash ordering: the head segment is deleted only after `log.flushed()` confirms that the
 * re-appended copies of its live entries are durable (removeSegment also refuses segments
 * that are not fully written). A crash in between leaves both copies; replay keeps the later.
 * A head without live entries goes at once: nothing in it has to survive. Its inserts were
 * evicted, expired, forgotten or superseded, and its tombstones cancel only inserts in it or
 * before it; if the later records that did that are lost in a crash, the key is absent either
 * way, and only records of unconfirmed publishes are lost. Entries dropped because they expired are the oldest in the map, so a replay that still sees
 * them evicts them first and they change nothing else. Records not yet flushed at a crash
 * are lost with the publishes they belonged to, whose confirms had not been sent.
 *
 * Keys are stored as UTF-8: a key with a lone surrogate (impossible from decoded wire text)
 * would come back with U+FFFD after a restart.
 */
import { RecordType, type SegmentLog, type Storage } from '../../storage/mod.js';
import { BrokerError } from '../errors.js';

export interface DedupCacheOptions {
  /** Most keys held; beyond it the oldest inserted is evicted. */
  size: number;
  /** How long a key is remembered (ms), or null for "until evicted". */
  ttlMs: number | null;
  /** Segment size of a new cache log (default 1 MiB; smaller in tests). */
  segmentBytes?: number;
}

/** The record is a tombstone (forget) rather than an insert. */
const TOMBSTONE = 1;
const DEFAULT_SEGMENT_BYTES = 1024 * 1024;
const EXPIRES_BYTES = 8;

interface Entry {
  /** Milliseconds since the epoch; 0 = never. */
  expiresAt: number;
  /** Base offset of the segment holding the record that made this entry live. */
  seg: number;
}

export class DedupCache {
  readonly #log: SegmentLog;
  readonly #size: number;
  readonly #ttlMs: number | null;
  /** Insertion order = log order (see the invariant above). */
  readonly #keys = new Map<string, Entry>();
  /** Live entries per segment base. */
  readonly #live = new Map<number, number>();
  #scratch = Buffer.allocUnsafe(256);
  /** The latest `now` a caller gave: compaction judges expiry by the caller's clock. */
  #now = 0;
  #compacting: Promise<void> | null = null;
  #closed = false;

  private constructor(log: SegmentLog, opts: DedupCacheOptions) {
    this.#log = log;
    this.#size = Math.max(1, Math.floor(opts.size));
    this.#ttlMs = opts.ttlMs;
  }

  /** Opens (creating if new) the cache stored in log `logName` and replays it. */
  static async open(storage: Storage, logName: string, opts: DedupCacheOptions, now: number = Date.now()): Promise<DedupCache> {
    const log = await storage.openLog(logName, { durability: 'fsync', segmentBytes: opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES });
    const cache = new DedupCache(log, opts);
    await cache.#replay(now);
    return cache;
  }

  /** Deletes a cache's log (after close(); when its exchange or queue is deleted). */
  static async delete(storage: Storage, logName: string): Promise<boolean> {
    return storage.deleteLog(logName);
  }

  /** Keys held, including expired ones not reclaimed yet (seen() treats those as absent). */
  get size(): number {
    return this.#keys.size;
  }

  /** Whether `key` is held and not expired at `now`, without recording anything. */
  has(key: string, now: number): boolean {
    const e = this.#keys.get(key);
    return e !== undefined && (e.expiresAt === 0 || e.expiresAt > now);
  }

  /**
   * True if `key` is held and not expired at `now`: a duplicate (its expiry is not extended).
   * Otherwise records it, to expire at now + ttlMs (the cache's TTL when not given; null =
   * never) and returns false. Synchronous; the record is durable once the storage's committer
   * has flushed (a publish confirm waits for that already).
   */
  seen(key: string, now: number, ttlMs?: number | null): boolean {
    if (this.#closed) throw new BrokerError('internal', 'INTERNAL_ERROR - deduplication cache is closed');
    if (now > this.#now) this.#now = now;
    const e = this.#keys.get(key);
    if (e !== undefined) {
      if (e.expiresAt === 0 || e.expiresAt > now) return true;
      this.#drop(key, e);
    }
    const ttl = ttlMs === undefined ? this.#ttlMs : ttlMs;
    const expiresAt = ttl === null ? 0 : Math.max(1, now + ttl);
    this.#insert(key, expiresAt, now);
    while (this.#keys.size > this.#size) {
      const [k, first] = this.#keys.entries().next().value as [string, Entry];
      this.#drop(k, first);
    }
    this.#maybeCompact();
    return false;
  }

  /** Removes `key` (queue-level dedup: its message left the queue). Persisted as a tombstone. */
  forget(key: string): void {
    if (this.#closed) throw new BrokerError('internal', 'INTERNAL_ERROR - deduplication cache is closed');
    const e = this.#keys.get(key);
    if (e === undefined) return; // evicted or never seen: a replay cannot bring it back either
    this.#drop(key, e);
    const n = Buffer.byteLength(key);
    const buf = this.#buffer(n);
    buf.write(key, 0, 'utf8');
    this.#log.append(buf.subarray(0, n), Date.now(), TOMBSTONE, RecordType.DATA);
    this.#maybeCompact();
  }

  /** Resolves when no compaction is running (tests; a clean stop uses close()). */
  async idle(): Promise<void> {
    while (this.#compacting !== null) await this.#compacting;
  }

  /** Stops compaction; the log stays open in the Storage (delete() or Storage.close() end it). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#compacting !== null) await this.#compacting;
  }

  // ---- internals

  #buffer(n: number): Buffer {
    if (this.#scratch.length < n) this.#scratch = Buffer.allocUnsafe(Math.max(n, this.#scratch.length * 2));
    return this.#scratch;
  }

  /** Appends an insert record and makes `key` the newest entry. */
  #insert(key: string, expiresAt: number, ts: number): void {
    const n = Buffer.byteLength(key);
    const buf = this.#buffer(EXPIRES_BYTES + n);
    buf.writeUInt32LE(expiresAt >>> 0, 0);
    buf.writeUInt32LE(Math.floor(expiresAt / 0x1_0000_0000), 4);
    buf.write(key, EXPIRES_BYTES, 'utf8');
    const offset = this.#log.append(buf.subarray(0, EXPIRES_BYTES + n), ts, 0, RecordType.DATA);
    const seg = this.#log.segmentRange(offset)!.base;
    this.#keys.set(key, { expiresAt, seg });
    this.#live.set(seg, (this.#live.get(seg) ?? 0) + 1);
  }

  #drop(key: string, e: Entry): void {
    this.#keys.delete(key);
    const n = (this.#live.get(e.seg) ?? 1) - 1;
    if (n > 0) this.#live.set(e.seg, n);
    else this.#live.delete(e.seg);
  }

  async #replay(now: number): Promise<void> {
    const log = this.#log;
    const bases = log.segmentBases();
    let si = 0;
    let next = log.startOffset;
    const end = log.nextOffset;
    while (next < end) {
      const recs = await log.readBatch(next, 1024 * 1024);
      if (recs.length === 0) break;
      for (const r of recs) {
        while (si + 1 < bases.length && r.offset >= bases[si + 1]!) si++;
        const p = r.payload;
        if ((r.flags & TOMBSTONE) !== 0) {
          const e = this.#keys.get(p.toString('utf8'));
          if (e !== undefined) this.#drop(p.toString('utf8'), e);
          continue;
        }
        if (p.length < EXPIRES_BYTES) continue; // not a record of ours
        const key = p.toString('utf8', EXPIRES_BYTES);
        const old = this.#keys.get(key);
        if (old !== undefined) this.#drop(key, old);
        const seg = bases[si]!;
        this.#keys.set(key, { expiresAt: p.readUInt32LE(0) + p.readUInt32LE(4) * 0x1_0000_0000, seg });
        this.#live.set(seg, (this.#live.get(seg) ?? 0) + 1);
        while (this.#keys.size > this.#size) {
          const [k, first] = this.#keys.entries().next().value as [string, Entry];
          this.#drop(k, first);
        }
      }
      next = recs[recs.length - 1]!.offset + 1;
    }
    // Drop the expired entries at the front only: the rest stay until evicted or reclaimed,
    // which keeps "a replay sees at most some extra, oldest, expired entries" true.
    if (now > this.#now) this.#now = now;
    for (const [k, e] of this.#keys) {
      if (e.expiresAt === 0 || e.expiresAt > now) break;
      this.#drop(k, e);
    }
    this.#maybeCompact();
  }

  /** Starts reclaiming the head segment when it is dead, or when the log is mostly dead records. */
  #maybeCompact(): void {
    if (this.#compacting !== null || this.#closed || !this.#headReclaimable()) return;
    this.#compacting = this.#compact()
      .catch(() => undefined) // a failed removal leaves the segment; the next append retries
      .finally(() => {
        this.#compacting = null;
      });
  }

  #headReclaimable(): boolean {
    const log = this.#log;
    if (log.segmentCount < 2) return false;
    const head = log.startOffset;
    if (!this.#live.has(head)) return true;
    // Pinned head: worth rewriting once the dead records outnumber the live ones by more than
    // the head's own size. A log whose entries die in insertion order (size eviction) never
    // gets here: its head empties on its own.
    const headRecords = log.segmentRange(head)!.end - head;
    const dead = log.nextOffset - head - this.#keys.size;
    return dead > this.#keys.size + headRecords;
  }

  async #compact(): Promise<void> {
    const log = this.#log;
    // Removing a dead head is progress by itself; only rewrites could go round in circles (a
    // bug), so only they are budgeted. A run that stops early is resumed by the next append.
    let rewrites = 2 * log.segmentCount + 4;
    while (!this.#closed && this.#headReclaimable()) {
      const head = log.startOffset;
      if (this.#live.has(head)) {
        if (rewrites-- <= 0) return;
        this.#rewriteHead(head);
        // The re-appended copies must be durable before their originals go (see above).
        await log.flushed();
        if (this.#closed || this.#live.has(head) || log.startOffset !== head) return;
      }
      if (await log.removeSegment(head)) continue;
      // Refused: sealed by the last append but not written yet. Once the round has run it goes.
      await log.flushed();
      if (this.#closed || this.#live.has(head) || log.startOffset !== head) return;
      if (!(await log.removeSegment(head))) return;
    }
  }

  /** Moves the live entries of segment `head` to the tail (dropping the expired ones). */
  #rewriteHead(head: number): void {
    const moved: Array<[string, Entry]> = [];
    for (const kv of this.#keys) {
      if (kv[1].seg !== head) break;
      moved.push(kv);
    }
    if (moved.length !== (this.#live.get(head) ?? 0)) {
      // The order invariant does not hold (a bug): find them the slow way.
      moved.length = 0;
      for (const kv of this.#keys) if (kv[1].seg === head) moved.push(kv);
    }
    const now = this.#now;
    for (const [k, e] of moved) {
      this.#drop(k, e);
      if (e.expiresAt !== 0 && e.expiresAt <= now) continue;
      this.#insert(k, e.expiresAt, now);
    }
  }
}

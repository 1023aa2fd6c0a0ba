/**
 * FileMetaStore: the definitions as an append-only log plus a snapshot, in one directory.
 *
 *   defs.log            change records, appended in group-commit rounds
 *   defs.snapshot       the whole state as of sequence S, written by compaction
 *   defs.snapshot.tmp   a snapshot being written; never read, deleted on open
 *
 * Both files use the shared record framing (storage/log/record.ts), type DATA, flags 0.
 * Log record:      offset = seq (1, 2, 3 ... never reused, carried across compactions)
 *                  payload = JSON {"op":"put","kind":k,"key":x,"value":v} | {"op":"delete","kind":k,"key":x}
 * Snapshot record: offset = index in the snapshot (0, 1, ... N)
 *                  payload = N x JSON {"op":"put",...}, then JSON {"op":"commit","v":1,"seq":S,"count":N}
 *                  and nothing after it.
 *
 * Crash ordering (the invariant: a put/delete whose promise resolved is never lost and never
 * reordered; one whose promise did not resolve may or may not survive):
 * 1. A change gets the next seq and is applied to memory synchronously; its record is appended
 *    in the next round. Rounds run one at a time and write records in seq order, so the log is
 *    always a seq-ordered prefix of the accepted changes, and recovery stops at the first
 *    invalid record, so what survives is a prefix: no gaps, no reordering.
 * 2. A promise resolves only after its round's write (policy 'os': survives kill -9) and its
 *    fdatasync (policy 'fsync': survives power loss) have returned.
 * 3. Compaction captures the memory state synchronously with S = the last seq handed out. It
 *    may contain changes not yet written; they are in the snapshot and get written to the log
 *    later with seq <= S, which replay skips. Steps and what a crash after each one leaves:
 *    a. write defs.snapshot.tmp, fdatasync it  -> tmp ignored and deleted; old snapshot + log
 *    b. rename tmp over defs.snapshot           -> old or new snapshot, either is complete
 *                                                  (a rename is atomic); log still complete
 *    c. fsync the directory                     -> new snapshot is durable; the old log's
 *                                                  records all have seq <= S and are skipped
 *    d. ftruncate defs.log to 0, fdatasync      -> the log may be whole, empty, or cut
 *                                                  anywhere: every record in it is <= S
 *                                                  (skipped), a torn tail is cut on open
 *    e. later rounds append records > S to the fresh log.
 *    The log is emptied only after the snapshot covering it is durable (c before d), and
 *    compaction always syncs, even under 'os': a torn snapshot would stop the store from
 *    opening at all, which is worse than any lost tail.
 * 4. Recovery: snapshot (must end in its commit record, else CorruptSegment), then the log,
 *    skipping seq <= S and stopping at the first invalid record, which is truncated away
 *    (and synced) before the first new append, so new records never follow garbage.
 */
import { mkdir, open, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CorruptSegment, SluiceError, systemClock, type Clock } from '../../common/mod.js';
import {
  MAX_RECORD_BYTES,
  RECORD_HEADER,
  RecordCheck,
  RecordType,
  checkRecord,
  encodeRecord,
  recordLength,
  recordOffset,
  recordPayload,
  recordSize,
  type RecordCheckResult,
} from '../log/record.js';
import {
  MetaState,
  checkKindKey,
  deepFreeze,
  frozenFromJson,
  toJson,
  type Durability,
  type MetaChange,
  type MetaStore,
  type MetaStoreStats,
  type RecoveryReport,
} from './meta-store.js';

/** The change log, appended in rounds and emptied by compaction. */
export const DEFS_LOG = 'defs.log';
/** The full state as of a sequence number; replaced only by rename. */
export const DEFS_SNAPSHOT = 'defs.snapshot';
/** A snapshot being written; a leftover one is from an interrupted compaction. */
export const DEFS_SNAPSHOT_TMP = 'defs.snapshot.tmp';

/** Snapshot format version, in the commit record. */
const SNAPSHOT_VERSION = 1;
const DEFAULT_COMPACT_AFTER = 8192;

export interface FileMetaStoreOptions {
  /** 'fsync' (default): resolve after fdatasync. 'os': resolve after write(). */
  durability?: Durability;
  /** Compact once the log holds more than this many records. */
  compactAfter?: number;
  clock?: Clock;
}

/** The records of one round, and the promise every change in it waits on. */
class Batch {
  readonly buffers: Buffer[] = [];
  #promise: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((e: unknown) => void) | undefined;

  get count(): number {
    return this.buffers.length;
  }
  // Created on first use, so an empty batch that fails never leaves an unhandled rejection.
  get promise(): Promise<void> {
    this.#promise ??= new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    return this.#promise;
  }
  resolve(): void {
    this.#resolve?.();
  }
  reject(e: unknown): void {
    this.#reject?.(e);
  }
}

export class FileMetaStore implements MetaStore {
  readonly #dir: string;
  readonly #log: FileHandle;
  readonly #state: MetaState;
  readonly #sync: boolean;
  readonly #compactAfter: number;
  readonly #clock: Clock;
  /** Last seq handed out. */
  #seq: number;
  /** Records in defs.log, including ones a snapshot already covers. */
  #logRecords: number;
  /** Compact when #logRecords passes this; pushed back after a failed compaction. */
  #compactAt: number;
  #next = new Batch();
  #inFlight: Batch | undefined;
  /** The drain loop, while one runs; close() waits on it. */
  #running: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Set by a failed write or sync: the file's state is unknown, so nothing more is accepted. */
  #failed: SluiceError | undefined;
  #stats: MetaStoreStats = { rounds: 0, records: 0, compactions: 0 };

  private constructor(
    dir: string,
    log: FileHandle,
    state: MetaState,
    seq: number,
    logRecords: number,
    opts: FileMetaStoreOptions,
  ) {
    this.#dir = dir;
    this.#log = log;
    this.#state = state;
    this.#seq = seq;
    this.#logRecords = logRecords;
    this.#sync = (opts.durability ?? 'fsync') === 'fsync';
    this.#compactAfter = opts.compactAfter ?? DEFAULT_COMPACT_AFTER;
    this.#compactAt = this.#compactAfter;
    this.#clock = opts.clock ?? systemClock;
  }

  /** Opens (creating if needed) the store in `dir`, recovering from any crash. */
  static async open(dir: string, opts: FileMetaStoreOptions = {}): Promise<{ store: FileMetaStore; report: RecoveryReport }> {
    if (opts.compactAfter !== undefined && !(opts.compactAfter >= 1)) throw new RangeError('compactAfter must be >= 1');
    await mkdir(dir, { recursive: true });
    const report: RecoveryReport = { truncatedBytes: 0, droppedRecords: 0, removed: [] };
    const tmpPath = join(dir, DEFS_SNAPSHOT_TMP);
    if (await unlinkIfExists(tmpPath)) report.removed.push(tmpPath);

    const state = new MetaState();
    const snapSeq = await loadSnapshot(join(dir, DEFS_SNAPSHOT), state);
    const logPath = join(dir, DEFS_LOG);
    const replay = await replayLog(logPath, state, snapSeq);

    const log = await open(logPath, 'a');
    try {
      if (replay.cut !== undefined) {
        report.truncatedBytes = replay.cut.bytes;
        report.droppedRecords = replay.cut.records;
        report.reason = replay.cut.reason;
        report.path = logPath;
        report.position = replay.validBytes;
        // Synced whatever the policy: new records must never land behind a garbage tail.
        await log.truncate(replay.validBytes);
        await log.datasync();
      }
      // Makes a newly created log, and the tmp file's removal, durable.
      await fsyncDir(dir);
    } catch (e) {
      await log.close();
      throw ioError(`recovering ${logPath}`, e);
    }
    const store = new FileMetaStore(dir, log, state, Math.max(snapSeq, replay.lastSeq), replay.records, opts);
    return { store, report };
  }

  get<T = unknown>(kind: string, key: string): T | undefined {
    return this.#state.get(kind, key) as T | undefined;
  }

  all<T = unknown>(kind: string): Map<string, T> {
    return this.#state.all(kind) as Map<string, T>;
  }

  put(kind: string, key: string, value: unknown): Promise<void> {
    let valueJson: string;
    try {
      this.#checkOpen();
      checkKindKey(kind, key);
      valueJson = toJson(value);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#state.set(kind, key, frozenFromJson(valueJson));
    return this.#append(`{"op":"put","kind":${JSON.stringify(kind)},"key":${JSON.stringify(key)},"value":${valueJson}}`);
  }

  delete(kind: string, key: string): Promise<void> {
    try {
      this.#checkOpen();
      checkKindKey(kind, key);
    } catch (e) {
      return Promise.reject(e);
    }
    if (!this.#state.delete(kind, key)) return this.#barrier();
    return this.#append(`{"op":"delete","kind":${JSON.stringify(kind)},"key":${JSON.stringify(key)}}`);
  }

  stats(): MetaStoreStats {
    return { ...this.#stats };
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      while (this.#running !== undefined) await this.#running;
      await this.#log.close();
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#closed) throw new SluiceError('SLUICE_STORAGE_CLOSED', `definitions store in ${this.#dir} is closed`);
  }

  #append(payloadJson: string): Promise<void> {
    const payload = Buffer.from(payloadJson, 'utf8');
    if (recordSize(payload.length) > MAX_RECORD_BYTES) {
      return Promise.reject(new SluiceError('SLUICE_STORAGE_RECORD_TOO_LARGE'));
    }
    const buf = Buffer.allocUnsafe(recordSize(payload.length));
    encodeRecord(buf, 0, ++this.#seq, this.#clock.now(), RecordType.DATA, 0, payload);
    this.#next.buffers.push(buf);
    this.#running ??= this.#drain();
    return this.#next.promise;
  }

  /** Settles with the last change accepted so far, so a no-op never overtakes a real one. */
  #barrier(): Promise<void> {
    if (this.#next.count > 0) return this.#next.promise;
    if (this.#inFlight !== undefined) return this.#inFlight.promise;
    return Promise.resolve();
  }

  /** The one group-commit loop: one round at a time, each taking everything queued so far. */
  async #drain(): Promise<void> {
    try {
      for (;;) {
        // Waiting a turn lets callers woken by the previous round queue their next change into
        // this one: batching comes from load, with no timer.
        await nextTurn();
        if (this.#next.count === 0 || this.#failed !== undefined) return;
        await this.#round();
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #round(): Promise<void> {
    const batch = this.#next;
    this.#next = new Batch();
    this.#inFlight = batch;
    try {
      await writeAll(this.#log, batch.buffers.length === 1 ? batch.buffers[0]! : Buffer.concat(batch.buffers));
      if (this.#sync) await this.#log.datasync();
    } catch (e) {
      // After a failed write or fsync the file's contents are unknown (the kernel may have
      // dropped the dirty pages), so this store stops; reopening recovers the durable prefix.
      this.#failed = ioError(`appending to ${join(this.#dir, DEFS_LOG)}`, e);
      batch.reject(this.#failed);
      this.#next.reject(this.#failed);
      return;
    } finally {
      this.#inFlight = undefined;
    }
    this.#stats.rounds++;
    this.#stats.records += batch.count;
    this.#logRecords += batch.count;
    batch.resolve();
    if (this.#logRecords > this.#compactAt) await this.#compact();
  }

  /** Runs inside a round, so no append overlaps it. See the crash ordering at the top. */
  async #compact(): Promise<void> {
    const seq = this.#seq;
    const snapshot = encodeSnapshot(this.#state, seq, this.#clock.now());
    const tmpPath = join(this.#dir, DEFS_SNAPSHOT_TMP);
    try {
      const tmp = await open(tmpPath, 'w');
      try {
        await writeAll(tmp, snapshot);
        await tmp.datasync();
      } finally {
        await tmp.close();
      }
      await rename(tmpPath, join(this.#dir, DEFS_SNAPSHOT));
      await fsyncDir(this.#dir);
    } catch {
      // The old snapshot and the whole log are still in place, so nothing is lost; try again
      // once the log has grown by another compactAfter records.
      await unlinkIfExists(tmpPath).catch(() => false);
      this.#compactAt = this.#logRecords + this.#compactAfter;
      return;
    }
    try {
      await this.#log.truncate(0);
      await this.#log.datasync();
    } catch (e) {
      // The snapshot is durable and covers every record in the log, but a half-done truncate
      // leaves the append position unknown; stop rather than append after it.
      this.#failed = ioError(`truncating ${join(this.#dir, DEFS_LOG)} after a snapshot`, e);
      this.#next.reject(this.#failed);
      return;
    }
    this.#logRecords = 0;
    this.#compactAt = this.#compactAfter;
    this.#stats.compactions++;
  }
}

function encodeSnapshot(state: MetaState, seq: number, ts: number): Buffer {
  const payloads: Buffer[] = [];
  for (const [kind, key, value] of state.entries()) {
    payloads.push(Buffer.from(JSON.stringify({ op: 'put', kind, key, value }), 'utf8'));
  }
  payloads.push(Buffer.from(JSON.stringify({ op: 'commit', v: SNAPSHOT_VERSION, seq, count: payloads.length }), 'utf8'));
  let size = 0;
  for (const p of payloads) size += recordSize(p.length);
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  payloads.forEach((p, i) => {
    pos = encodeRecord(buf, pos, i, ts, RecordType.DATA, 0, p);
  });
  return buf;
}

/** Loads defs.snapshot into state and returns the seq it covers (0 when there is none). */
async function loadSnapshot(path: string, state: MetaState): Promise<number> {
  const buf = await readIfExists(path);
  if (buf === undefined) return 0;
  let pos = 0;
  let index = 0;
  while (pos < buf.length) {
    const check = checkRecord(buf, pos, buf.length);
    if (check !== RecordCheck.OK) throw new CorruptSegment(path, pos, describe(check));
    if (recordOffset(buf, pos) !== index) throw new CorruptSegment(path, pos, `record index ${recordOffset(buf, pos)}, expected ${index}`);
    const body = parsePayload(recordPayload(buf, pos));
    if (body === undefined) throw new CorruptSegment(path, pos, 'bad payload');
    pos += recordLength(buf, pos);
    if (body.op === 'commit') {
      if (body.count !== index) throw new CorruptSegment(path, pos, `commit says ${body.count} entries, found ${index}`);
      if (body.v !== SNAPSHOT_VERSION) throw new CorruptSegment(path, pos, `unknown snapshot version ${body.v}`);
      if (pos !== buf.length) throw new CorruptSegment(path, pos, 'bytes after the commit record');
      return body.seq;
    }
    if (body.op !== 'put') throw new CorruptSegment(path, pos, `unexpected ${body.op} in a snapshot`);
    state.apply(body);
    index++;
  }
  throw new CorruptSegment(path, pos, 'no commit record');
}

interface Replay {
  /** Bytes of valid records from the start. */
  validBytes: number;
  records: number;
  lastSeq: number;
  cut?: { bytes: number; records: number; reason: string };
}

/** Applies the log's records with seq > snapSeq to state, stopping at the first invalid one. */
async function replayLog(path: string, state: MetaState, snapSeq: number): Promise<Replay> {
  const buf = await readIfExists(path);
  const end = buf?.length ?? 0;
  const replay: Replay = { validBytes: 0, records: 0, lastSeq: 0 };
  if (buf === undefined) return replay;
  let pos = 0;
  let reason: string | undefined;
  while (pos < end) {
    const check = checkRecord(buf, pos, end);
    if (check !== RecordCheck.OK) {
      reason = describe(check);
      break;
    }
    const seq = recordOffset(buf, pos);
    if (seq <= replay.lastSeq) {
      reason = `sequence went back from ${replay.lastSeq} to ${seq}`;
      break;
    }
    const change = parsePayload(recordPayload(buf, pos));
    if (change === undefined || (change.op !== 'put' && change.op !== 'delete')) {
      reason = 'bad payload';
      break;
    }
    if (seq > snapSeq) state.apply(change);
    replay.lastSeq = seq;
    replay.records++;
    pos += recordLength(buf, pos);
  }
  replay.validBytes = pos;
  if (reason !== undefined) replay.cut = { bytes: end - pos, records: countFrames(buf, pos, end), reason };
  return replay;
}

type Payload = MetaChange | { op: 'commit'; v: number; seq: number; count: number };

/** Parses and shape-checks a payload; undefined if it is not one of ours. */
function parsePayload(bytes: Buffer): Payload | undefined {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (body === null || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  if (b.op === 'commit') {
    return typeof b.seq === 'number' && typeof b.count === 'number' && typeof b.v === 'number'
      ? { op: 'commit', v: b.v, seq: b.seq, count: b.count }
      : undefined;
  }
  if (typeof b.kind !== 'string' || b.kind.length === 0 || typeof b.key !== 'string') return undefined;
  if (b.op === 'delete') return { op: 'delete', kind: b.kind, key: b.key };
  if (b.op === 'put' && 'value' in b) {
    return { op: 'put', kind: b.kind, key: b.key, value: deepFreeze(b.value) };
  }
  return undefined;
}

/** Record frames in buf[pos, end), following length fields while they are plausible. */
function countFrames(buf: Buffer, pos: number, end: number): number {
  let n = 0;
  while (pos < end) {
    if (end - pos < 4) return n + 1;
    const len = buf.readUInt32LE(pos);
    // A zero length is the unwritten tail, not a record.
    if (len === 0) return n;
    if (len < RECORD_HEADER - 4 || len > MAX_RECORD_BYTES || end - pos < 4 + len) return n + 1;
    n++;
    pos += 4 + len;
  }
  return n;
}

function describe(check: RecordCheckResult): string {
  switch (check) {
    case RecordCheck.SHORT:
      return 'truncated record';
    case RecordCheck.END:
      return 'zero length';
    case RecordCheck.BAD_LENGTH:
      return 'bad length';
    case RecordCheck.BAD_MAGIC:
      return 'bad magic';
    case RecordCheck.BAD_CRC:
      return 'bad crc';
    default:
      return `check ${check}`;
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

/** Makes renames, creations and removals in `dir` durable. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(`reading ${path}`, e);
  }
}

async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

function ioError(what: string, cause: unknown): SluiceError {
  if (cause instanceof SluiceError) return cause;
  return new SluiceError('SLUICE_STORAGE_IO', `${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
}

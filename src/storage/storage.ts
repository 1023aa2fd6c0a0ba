/**
 * The storage engine of one node: a data directory holding the journal, the logs and the
 * definitions, one GroupCommitter, and the checkpoint that keeps the journal short.
 *
 *   <dataDir>/LOCK                 owner pid (data-dir-lock.ts)
 *   <dataDir>/CLEAN                present only between a clean close and the next open
 *   <dataDir>/journal/*.jnl        the write-ahead journal (durability/journal.ts)
 *   <dataDir>/logs/NEXT_ID         next log id; ids are never reused, so a deleted log's
 *                                  journal entries can never be replayed into a new log
 *   <dataDir>/logs/<id>/log.json   {id, name, options} of one SegmentLog, then its segments
 */
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { SluiceError } from '../common/mod.js';
import { fsyncDir, writeFileAtomic } from './io.js';
import { DataDirLock } from './data-dir-lock.js';
import { GroupCommitter } from './durability/group-commit.js';
import { Journal, type JournalReplayEntry, type JournalReplayReport } from './durability/journal.js';
import type { Durability } from './durability/policy.js';
import { SegmentLog, type LogOptions, type LogRecoveryReport } from './log/segment-log.js';
import { FileQueueStore, type QueueRecoveryReport, type QueueStoreOptions } from './queue-store/file-queue-store.js';

export interface StorageOptions {
  /** Journal file size before rolling to a new one. */
  journalSegmentBytes?: number;
  /** Checkpoint at least this often while the journal grows (ms). */
  checkpointIntervalMs?: number;
  /** Checkpoint early once the journal holds this many bytes. */
  checkpointBytes?: number;
  /**
   * A commit round with at most this many logs to fsync syncs them directly instead of
   * writing them to the journal too (0: always journal). Default 2.
   */
  directSyncMaxLogs?: number;
}

export interface StorageRecoveryReport {
  clean: boolean;
  journal: JournalReplayReport;
  logs: LogRecoveryReport[];
  /** Journal entries for logs that no longer exist (deleted before the crash). */
  orphanEntries: number;
  durationMs: number;
}

interface LogMeta {
  id: number;
  name: string;
  options: LogOptions;
}

/**
 * Queue logs: with 1 MiB messages an 8 MiB segment would roll every 8 messages, and each roll
 * costs a file create, a directory fsync, a seal, an ack file and later two deletes.
 */
const QUEUE_MIN_RECORDS_PER_SEGMENT = 32;

function logDirName(id: number): string {
  return id.toString(16).padStart(8, '0');
}

export class Storage {
  readonly dir: string;
  readonly committer: GroupCommitter;
  #journal: Journal;
  #lock: DataDirLock;
  #logs = new Map<string, SegmentLog>();
  #byId = new Map<number, SegmentLog>();
  #nextLogId = 1;
  #timer: NodeJS.Timeout | null = null;
  #checkpointing: Promise<void> | null = null;
  #opts: Required<StorageOptions>;
  #closed = false;
  /** openLog() calls, one at a time (they share NEXT_ID and its temporary file). */
  #opening: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, journal: Journal, lock: DataDirLock, opts: Required<StorageOptions>) {
    this.dir = dir;
    this.#journal = journal;
    this.#lock = lock;
    this.#opts = opts;
    this.committer = new GroupCommitter(journal, opts.directSyncMaxLogs);
    this.committer.onRound = () => this.#maybeEarlyCheckpoint();
  }

  static async open(dir: string, options: StorageOptions = {}): Promise<{ storage: Storage; report: StorageRecoveryReport }> {
    const started = Date.now();
    const opts: Required<StorageOptions> = {
      journalSegmentBytes: options.journalSegmentBytes ?? 64 * 1024 * 1024,
      checkpointIntervalMs: options.checkpointIntervalMs ?? 2000,
      checkpointBytes: options.checkpointBytes ?? 128 * 1024 * 1024,
      directSyncMaxLogs: options.directSyncMaxLogs ?? 2,
    };
    await mkdir(`${dir}/journal`, { recursive: true });
    await mkdir(`${dir}/logs`, { recursive: true });
    const lock = await DataDirLock.acquire(dir);
    try {
      const clean = await stat(`${dir}/CLEAN`).then(() => true, () => false);
      if (clean) {
        // Durably, before anything is appended: a CLEAN that came back after a power loss would
        // make the next open trust a last-segment index that no longer describes the file.
        await unlink(`${dir}/CLEAN`);
        await fsyncDir(dir);
      }
      // Open every log first, so that journal replay has somewhere to put records.
      const metas: LogMeta[] = [];
      let nextId = Number((await readFile(`${dir}/logs/NEXT_ID`, 'utf8').catch(() => '1')).trim()) || 1;
      for (const n of await readdir(`${dir}/logs`)) {
        if (n.endsWith('.deleted')) {
          await rm(`${dir}/logs/${n}`, { recursive: true, force: true });
          continue;
        }
        if (!/^[0-9a-f]{8}$/.test(n)) continue;
        const raw = await readFile(`${dir}/logs/${n}/log.json`, 'utf8').catch(() => null);
        if (raw === null) {
          // Created but never described: a crash inside createLog, before anything was acknowledged.
          await rm(`${dir}/logs/${n}`, { recursive: true, force: true });
          continue;
        }
        const meta = JSON.parse(raw) as LogMeta;
        metas.push(meta);
        if (meta.id >= nextId) nextId = meta.id + 1;
      }
      const entries: JournalReplayEntry[] = [];
      const { journal, report: jreport } = await Journal.open(`${dir}/journal`, opts.journalSegmentBytes, (e) => entries.push(e));
      const storage = new Storage(dir, journal, lock, opts);
      storage.#nextLogId = nextId;
      const reports: LogRecoveryReport[] = [];
      for (const meta of metas) {
        const log = new SegmentLog(meta.id, meta.name, `${dir}/logs/${logDirName(meta.id)}`, storage.committer, meta.options);
        reports.push(await log.open(clean));
        storage.#logs.set(meta.name, log);
        storage.#byId.set(meta.id, log);
      }
      let orphanEntries = 0;
      for (const e of entries) {
        const log = storage.#byId.get(e.logId);
        if (log === undefined) {
          orphanEntries++;
          continue;
        }
        const added = log.replay(e.bytes);
        reports.find((r) => r.log === log.name)!.replayed += added;
      }
      entries.length = 0;
      // Make the replayed records durable in their logs, then forget the old journal files.
      await storage.checkpoint();
      storage.#startTimer();
      const report: StorageRecoveryReport = {
        // A brand-new data directory has nothing to recover.
        clean: clean || (metas.length === 0 && jreport.files === 0),
        journal: jreport,
        logs: reports.filter((r) => r.truncatedBytes > 0 || r.quarantined.length > 0 || r.replayed > 0 || r.problems.length > 0),
        orphanEntries,
        durationMs: Date.now() - started,
      };
      return { storage, report };
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  #startTimer(): void {
    this.#timer = setInterval(() => {
      if (this.#journal.bytesSinceCheckpoint > 0) void this.checkpoint().catch(() => undefined);
    }, this.#opts.checkpointIntervalMs);
    this.#timer.unref();
  }

  /** Called by the commit path: an early checkpoint once the journal is large. */
  #maybeEarlyCheckpoint(): void {
    if (this.#journal.bytesSinceCheckpoint >= this.#opts.checkpointBytes && this.#checkpointing === null) {
      void this.checkpoint().catch(() => undefined);
    }
  }

  /**
   * Makes every log durable up to now and deletes the journal files that covered it: roll the
   * journal, wait for the round in flight, fsync the logs written since the last checkpoint,
   * and only then delete the sealed journal files (see journal.ts for the ordering argument).
   */
  checkpoint(): Promise<void> {
    if (this.#checkpointing !== null) return this.#checkpointing;
    this.#checkpointing = (async () => {
      this.#journal.requestRoll();
      await this.committer.settled();
      const sealed = this.#journal.sealedFiles();
      for (const log of this.#logs.values()) await log.syncDirty();
      await this.#journal.dropSealed(sealed);
    })().finally(() => {
      this.#checkpointing = null;
    });
    return this.#checkpointing;
  }

  get journalBytesSinceCheckpoint(): number {
    return this.#journal.bytesSinceCheckpoint;
  }

  /** Opens the log called `name`, creating it with `options` if it does not exist. */
  openLog(name: string, options: LogOptions = {}): Promise<SegmentLog> {
    const p = this.#opening.then(() => this.#openLog(name, options));
    this.#opening = p.catch(() => undefined);
    return p;
  }

  async #openLog(name: string, options: LogOptions): Promise<SegmentLog> {
    if (this.#closed) throw new SluiceError('SLUICE_STORAGE_CLOSED');
    const existing = this.#logs.get(name);
    if (existing !== undefined) return existing;
    const id = this.#nextLogId++;
    // A 'none' log (a transient queue) is dropped at the next start and never has journal
    // entries, so nothing about it needs to reach the disk: no fsync at all, which makes
    // declaring and deleting transient queues cheap (queue churn). open() moves the next id
    // past every log directory it finds, so an id is not reused while its directory exists.
    const ephemeral = options.durability === 'none';
    // Reserve the id durably before the log can have journal entries (ids are never reused).
    if (!ephemeral) await writeFileAtomic(`${this.dir}/logs`, 'NEXT_ID', String(this.#nextLogId));
    const dir = `${this.dir}/logs/${logDirName(id)}`;
    await mkdir(dir);
    const meta: LogMeta = { id, name, options };
    if (ephemeral) await writeFile(`${dir}/log.json`, JSON.stringify(meta));
    else {
      await writeFileAtomic(dir, 'log.json', JSON.stringify(meta));
      await fsyncDir(`${this.dir}/logs`);
    }
    const again = this.#logs.get(name);
    if (again !== undefined) {
      await rm(dir, { recursive: true, force: true });
      return again;
    }
    const log = new SegmentLog(id, name, dir, this.committer, options);
    await log.open(false);
    this.#logs.set(name, log);
    this.#byId.set(id, log);
    return log;
  }

  /**
   * Opens the queue store called `name`. Its log is created, if new, with 8 MiB segments that
   * grow to hold at least QUEUE_MIN_RECORDS_PER_SEGMENT large messages each.
   */
  async openQueue(
    name: string,
    options: { durability?: Durability; segmentBytes?: number; minRecordsPerSegment?: number } & QueueStoreOptions = {},
  ): Promise<{ store: FileQueueStore; report: QueueRecoveryReport }> {
    const logOpts: LogOptions = {
      durability: options.durability ?? 'fsync',
      segmentBytes: options.segmentBytes ?? 8 * 1024 * 1024,
      minRecordsPerSegment: options.minRecordsPerSegment ?? QUEUE_MIN_RECORDS_PER_SEGMENT,
    };
    const log = await this.openLog(name, logOpts);
    return FileQueueStore.open(log, this.committer, options);
  }

  getLog(name: string): SegmentLog | undefined {
    return this.#logs.get(name);
  }

  logNames(): string[] {
    return [...this.#logs.keys()];
  }

  /** Deletes a log and its files. Rename first, so a crash midway leaves nothing half-deleted. */
  async deleteLog(name: string): Promise<boolean> {
    const log = this.#logs.get(name);
    if (log === undefined) return false;
    this.#logs.delete(name);
    this.#byId.delete(log.id);
    await log.close();
    const aside = `${log.dir}.deleted`;
    await rename(log.dir, aside);
    if (log.durability !== 'none') await fsyncDir(`${this.dir}/logs`);
    await rm(aside, { recursive: true, force: true });
    return true;
  }

  /** Flushes everything, checkpoints, and marks the directory clean so the next open scans nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    // Held records (queue logs, segment-log.ts) are written now rather than dropped.
    for (const log of this.#logs.values()) log.setWriteGate(null);
    await this.committer.settled();
    await this.checkpoint();
    this.committer.close();
    for (const log of this.#logs.values()) await log.closeClean();
    await this.#journal.close();
    await this.#journal.dropSealed(this.#journal.sealedFiles());
    await writeFile(`${this.dir}/CLEAN`, '');
    await fsyncDir(this.dir);
    await this.#lock.release();
  }

  /** Stops without flushing or marking clean: what a crash leaves (for tests). */
  async abandon(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.committer.close();
    // A crash stops the writes in flight too; here the round in flight still ends, so that
    // none of its writes lands on a descriptor number reused by whoever opens the dir next.
    await this.committer.idle();
    for (const log of this.#logs.values()) await log.close();
    await this.#journal.close();
    await this.#lock.release();
  }
}

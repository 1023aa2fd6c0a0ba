/**
 * The node-wide write-ahead journal: the only file fdatasynced on the hot path (research
 * finding 3: a round costs 0.16 ms for one file and 15-18 ms for 256, so fsyncing each dirty
 * queue log does not scale).
 *
 * Journal files are named by the sequence number of their first entry. Each entry is
 *   u32 magic JOURNAL_MAGIC | u32 crc32c of bytes [8, 24) | u32 log id | u32 byte length | u64 jseq
 *   the log's record bytes (record.ts), exactly as written to the log
 * The entry header has its own CRC and each record inside has one, so a torn entry fails one
 * of them. Entry sequence numbers are consecutive; replay stops at the first gap or bad entry.
 *
 * Crash ordering: a log's pages are written in the same round but never fsynced on the hot
 * path. A checkpoint fsyncs every log written before it and only then deletes the journal
 * files those writes came from, so every fsync-acknowledged record is always in a synced log
 * or in a journal file that still exists.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { crc32c } from '../../common/mod.js';
import { closeFile, datasync, fsyncDir, openFile, writevAt } from '../io.js';
import { readU64, writeU64 } from '../log/record.js';

const JOURNAL_MAGIC = 0x534a4e4c; // "SJNL"
export const JOURNAL_ENTRY_HEADER = 24;

export function journalFileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.jnl`;
}

export class JournalBatch {
  readonly bufs: Buffer[] = [];
  entries = 0;
  bytes = 0;
  #journal: Journal;
  constructor(journal: Journal) {
    this.#journal = journal;
  }
  /** Adds the records in `bytes` (whole records of one log) as one journal entry. */
  add(logId: number, bytes: Buffer): void {
    this.addv(logId, [bytes], bytes.length);
  }

  /**
   * Adds the concatenation of `parts` (`length` bytes, whole records of one log, possibly cut
   * between a record's header and its payload) as one journal entry, without copying them.
   */
  addv(logId: number, parts: Buffer[], length: number): void {
    const h = Buffer.allocUnsafe(JOURNAL_ENTRY_HEADER);
    h.writeUInt32LE(JOURNAL_MAGIC, 0);
    h.writeUInt32LE(logId, 8);
    h.writeUInt32LE(length, 12);
    writeU64(h, 16, this.#journal.takeSeq());
    h.writeUInt32LE(crc32c(h, 8, JOURNAL_ENTRY_HEADER), 4);
    this.bufs.push(h);
    for (const b of parts) this.bufs.push(b);
    this.entries++;
    this.bytes += JOURNAL_ENTRY_HEADER + length;
  }
}

export interface JournalReplayEntry {
  logId: number;
  jseq: number;
  bytes: Buffer;
}

export interface JournalReplayReport {
  files: number;
  entries: number;
  /** Set when the last file ended in a torn or corrupt entry (expected after a crash). */
  tornTail: string | null;
}

export class Journal {
  readonly dir: string;
  readonly segmentBytes: number;
  #fd = -1;
  #pos = 0;
  #seq: number;
  #fileFirstSeq = 0;
  /** Files that are complete and wait for a checkpoint to delete them. */
  #sealed: string[] = [];
  #rollRequested = false;
  bytesSinceCheckpoint = 0;

  private constructor(dir: string, segmentBytes: number, nextSeq: number) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
    this.#seq = nextSeq;
  }

  /**
   * Reads every journal file in `dir` in order and hands each valid entry to `apply`. The
   * caller applies them idempotently (by record offset) and then checkpoints, after which the
   * old files are deleted.
   */
  static async open(
    dir: string,
    segmentBytes: number,
    apply: (e: JournalReplayEntry) => void,
  ): Promise<{ journal: Journal; report: JournalReplayReport }> {
    const names = (await readdir(dir)).filter((n) => /^\d{20}\.jnl$/.test(n)).sort();
    const report: JournalReplayReport = { files: names.length, entries: 0, tornTail: null };
    let expect = -1;
    let nextSeq = 0;
    for (const name of names) {
      const data = await readFile(`${dir}/${name}`);
      let pos = 0;
      while (pos + JOURNAL_ENTRY_HEADER <= data.length) {
        if (data.readUInt32LE(pos) !== JOURNAL_MAGIC) break;
        if (crc32c(data, pos + 8, pos + JOURNAL_ENTRY_HEADER) !== data.readUInt32LE(pos + 4)) {
          report.tornTail = `${name} at ${pos}: entry header CRC mismatch`;
          break;
        }
        const len = data.readUInt32LE(pos + 12);
        const jseq = readU64(data, pos + 16);
        if (expect >= 0 && jseq !== expect) {
          report.tornTail = `${name} at ${pos}: sequence ${jseq}, expected ${expect}`;
          break;
        }
        const start = pos + JOURNAL_ENTRY_HEADER;
        if (start + len > data.length) {
          report.tornTail = `${name} at ${pos}: entry runs past the end of the file`;
          break;
        }
        apply({ logId: data.readUInt32LE(pos + 8), jseq, bytes: data.subarray(start, start + len) });
        report.entries++;
        expect = jseq + 1;
        nextSeq = expect;
        pos = start + len;
      }
    }
    const journal = new Journal(dir, segmentBytes, nextSeq);
    journal.#sealed = names.map((n) => `${dir}/${n}`);
    return { journal, report };
  }

  takeSeq(): number {
    return this.#seq++;
  }

  beginBatch(): JournalBatch {
    return new JournalBatch(this);
  }

  /** Asks the next round to start a new file, so that the current ones can be checkpointed. */
  requestRoll(): void {
    if (this.#fd >= 0) this.#rollRequested = true;
  }

  /** Journal files that are complete (none of the coming rounds write to them). */
  sealedFiles(): string[] {
    return this.#sealed.slice();
  }

  async writeBatch(batch: JournalBatch): Promise<void> {
    if (this.#fd < 0 || this.#rollRequested || this.#pos + batch.bytes > this.segmentBytes) await this.#roll(batch);
    const pos = this.#pos;
    this.#pos += batch.bytes;
    this.bytesSinceCheckpoint += batch.bytes;
    await writevAt(this.#fd, batch.bufs, pos);
    await datasync(this.#fd);
  }

  async #roll(batch: JournalBatch): Promise<void> {
    this.#rollRequested = false;
    if (this.#fd >= 0) {
      const old = this.#fd;
      this.#sealed.push(`${this.dir}/${journalFileName(this.#fileFirstSeq)}`);
      await closeFile(old);
    }
    this.#fileFirstSeq = readU64(batch.bufs[0]!, 16);
    const path = `${this.dir}/${journalFileName(this.#fileFirstSeq)}`;
    // A file found at open under this name held no valid entry (replay would have moved the
    // sequence past it): it is overwritten here, so it must no longer be dropped as sealed.
    this.#sealed = this.#sealed.filter((f) => f !== path);
    this.#fd = await openFile(path, 'w');
    this.#pos = 0;
    await fsyncDir(this.dir);
  }

  /** Deletes journal files whose every entry is now in a synced log. */
  async dropSealed(files: string[]): Promise<void> {
    for (const f of files) await unlink(f).catch(() => undefined);
    const drop = new Set(files);
    this.#sealed = this.#sealed.filter((f) => !drop.has(f));
    this.bytesSinceCheckpoint = 0;
  }

  async close(): Promise<void> {
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      this.#sealed.push(`${this.dir}/${journalFileName(this.#fileFirstSeq)}`);
      await closeFile(fd);
    }
  }
}

/**
 * The schedule log's records and how they are read back.
 *
 * Payload of a schedule log record (type DATA; the record's ts is the time of add()):
 *   f64 dueAt | u16 group length | group (UTF-8) | payload
 * The record's offset in the log is the entry's id.
 */
import type { LogRecord, SegmentLog } from '../log/segment-log.js';
import type { ScheduledEntry } from './schedule-store.js';

export const ENTRY_PREFIX = 10;

/** Encodes an entry into `scratch` (grown if needed); returns the buffer and the length used. */
export function encodeEntry(scratch: Buffer, dueAt: number, group: Buffer, payload: Buffer): Buffer {
  const size = ENTRY_PREFIX + group.length + payload.length;
  const buf = scratch.length >= size ? scratch : Buffer.allocUnsafe(Math.max(size, scratch.length * 2));
  buf.writeDoubleLE(dueAt, 0);
  buf.writeUInt16LE(group.length, 8);
  group.copy(buf, ENTRY_PREFIX);
  payload.copy(buf, ENTRY_PREFIX + group.length);
  return buf;
}

/** Decodes a record; the payload is copied out so it does not pin the whole read buffer. */
export function decodeEntry(r: LogRecord): ScheduledEntry {
  const p = r.payload;
  const gl = p.readUInt16LE(8);
  return {
    id: r.offset,
    dueAt: p.readDoubleLE(0),
    group: p.toString('utf8', ENTRY_PREFIX, ENTRY_PREFIX + gl),
    payload: Buffer.from(p.subarray(ENTRY_PREFIX + gl)),
  };
}

/**
 * Reads what it can of `ids` inline (SegmentLog.readSync: page-cache reads of a few
 * microseconds, where a thread-pool read costs 10-80 us and allocates its buffer), for at
 * most `budgetMs`, so that a cold cache after a restart cannot block the event loop for long;
 * the rest through readEntries(). Returns the entries in the order of `ids`, null where a
 * record is not stored.
 */
export async function readEntriesFast(
  log: SegmentLog,
  ids: readonly number[],
  avgRecordBytes: number,
  scratch: Buffer,
  budgetMs: number,
): Promise<Array<ScheduledEntry | null>> {
  const out = new Array<ScheduledEntry | null>(ids.length);
  let missing: number[] | null = null;
  const deadline = performance.now() + budgetMs;
  for (let i = 0; i < ids.length; i++) {
    const r = (i & 31) === 31 && performance.now() > deadline ? undefined : log.readSync(ids[i]!, scratch);
    if (r === undefined) (missing ??= []).push(i);
    else out[i] = r === null ? null : decodeEntry(r);
  }
  if (missing !== null) {
    const got = await readEntries(log, missing.map((i) => ids[i]!), avgRecordBytes);
    for (let k = 0; k < missing.length; k++) out[missing[k]!] = got[k]!;
  }
  return out;
}

/**
 * Ids closer than this are read with one ranged read instead of one read each: a random read
 * costs 10-80 us here (a thread-pool round trip), while reading through a record in a ranged
 * read costs about 0.15 us (CRC check and parse of a small record).
 */
const RUN_GAP = 64;
/** Ranged reads in flight at once. */
const READ_CONCURRENCY = 32;

/**
 * Reads the entries named by `ids` (any order) from the log; returns them in the order of
 * `ids`, null where a record is not stored. Nearby ids share one ranged read, so a batch that
 * is dense in the log costs a few sequential reads; a sparse one costs one small read per id.
 */
export async function readEntries(log: SegmentLog, ids: readonly number[], avgRecordBytes: number): Promise<Array<ScheduledEntry | null>> {
  const sorted = Float64Array.from(ids).sort();
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1]! - sorted[j]! <= RUN_GAP) j++;
    runs.push([sorted[i]!, sorted[j]!]);
    i = j + 1;
  }
  const wanted = new Set(ids);
  const found = new Map<number, ScheduledEntry>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < runs.length) {
      const [from, to] = runs[next++]!;
      let off = from;
      while (off <= to) {
        const n = to - off + 1;
        const recs = await log.readBatch(off, Math.max(1, Math.ceil(n * avgRecordBytes)), n);
        if (recs.length === 0) break;
        for (const r of recs) if (r.offset <= to && wanted.has(r.offset)) found.set(r.offset, decodeEntry(r));
        off = recs[recs.length - 1]!.offset + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, runs.length) }, worker));
  return ids.map((id) => found.get(id) ?? null);
}

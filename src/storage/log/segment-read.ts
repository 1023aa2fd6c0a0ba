/**
 * Reading records out of one segment file: SegmentLog's read path, split from segment-log.ts,
 * which decides what may be read (written records only) and holds the descriptor open meanwhile.
 * Every record read is checked (length, magic, CRC); a bad one is a CorruptSegment, never data.
 */
import { CorruptSegment } from '../../common/mod.js';
import { readAt, readAtSync } from '../io.js';
import {
  checkRecord,
  RecordCheck,
  recordFlags,
  recordLength,
  recordOffset,
  recordPayload,
  recordTimestamp,
  recordType,
  RECORD_HEADER,
} from './record.js';
import type { Segment } from './segment.js';

export interface LogRecord {
  offset: number;
  ts: number;
  flags: number;
  /** RecordType: DATA, or ELIDED for a record written without its payload. */
  type: number;
  payload: Buffer;
}

/**
 * Reads records of `seg` from `offset` on, up to `maxBytes` of record data (at least one
 * record) and `maxRecords`, stopping at file position `limit` (the end of what is written).
 * Payloads are views of one read buffer.
 */
export async function readRecords(
  seg: Segment,
  fd: number,
  offset: number,
  maxBytes: number,
  maxRecords: number,
  limit: number,
): Promise<LogRecord[]> {
  let pos = await seg.floorPosition(offset);
  const out: LogRecord[] = [];
  let want = Math.min(Math.max(maxBytes, 4096) + (offset > seg.base ? seg.indexInterval : 0), limit - pos);
  while (out.length < maxRecords && pos < limit) {
    const buf = Buffer.allocUnsafe(Math.max(want, RECORD_HEADER));
    const n = await readAt(fd, buf, 0, Math.min(buf.length, limit - pos), pos);
    let p = 0;
    let progressed = false;
    let taken = 0;
    while (p < n && out.length < maxRecords) {
      const check = checkRecord(buf, p, n);
      if (check === RecordCheck.SHORT) break;
      if (check !== RecordCheck.OK) throw new CorruptSegment(seg.path, pos + p, 'record failed validation on read');
      const len = recordLength(buf, p);
      const off = recordOffset(buf, p);
      if (off >= offset) {
        if (taken > 0 && taken + len > maxBytes) return out;
        out.push({ offset: off, ts: recordTimestamp(buf, p), flags: recordFlags(buf, p), type: recordType(buf, p), payload: recordPayload(buf, p) });
        taken += len;
      }
      p += len;
      progressed = true;
    }
    if (out.length > 0 && (taken >= maxBytes || out.length >= maxRecords)) return out;
    if (!progressed) {
      // One record larger than the buffer: read exactly it.
      const len = buf.readUInt32LE(p) + 4;
      want = len;
      continue;
    }
    pos += p;
    if (out.length > 0) return out;
    want = Math.max(maxBytes, 4096);
  }
  return out;
}

/**
 * Reads the record at `offset` of `seg` with synchronous reads on `fd`, scanning from its index
 * entry; every record from there to `offset` must be written. The payload is a view of
 * `scratch` (or of a larger buffer when the record does not fit). Returns null when the record
 * is not in the segment, undefined when the index is not loaded (the caller reads async).
 */
export function readRecordSync(seg: Segment, fd: number, offset: number, scratch: Buffer): LogRecord | null | undefined {
  let pos = seg.floorPositionSync(offset);
  if (pos < 0) return undefined;
  const limit = seg.size;
  let buf = scratch;
  while (pos < limit) {
    const n = readAtSync(fd, buf, 0, Math.min(buf.length, limit - pos), pos);
    let p = 0;
    for (;;) {
      const check = checkRecord(buf, p, n);
      if (check === RecordCheck.SHORT) break;
      if (check !== RecordCheck.OK) throw new CorruptSegment(seg.path, pos + p, 'record failed validation on read');
      const off = recordOffset(buf, p);
      if (off === offset) {
        return { offset: off, ts: recordTimestamp(buf, p), flags: recordFlags(buf, p), type: recordType(buf, p), payload: recordPayload(buf, p) };
      }
      if (off > offset) return null;
      p += recordLength(buf, p);
    }
    if (p === 0) {
      // The next record is larger than the buffer: read exactly it.
      if (n < 4) return undefined;
      buf = Buffer.allocUnsafe(buf.readUInt32LE(0) + 4);
      continue;
    }
    pos += p;
  }
  return null;
}

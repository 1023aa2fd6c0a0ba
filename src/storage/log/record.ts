/**
 * The record format shared by every Sluice-owned log file (little-endian):
 *
 *   u32 len       bytes after this field (RECORD_HEADER - 4 + payload length)
 *   u32 crc32c    over bytes [8, 4 + len): everything after the crc field
 *   u8  magic     RECORD_MAGIC
 *   u8  type      what the payload is (RecordType)
 *   u16 flags     owner-defined bits
 *   u64 offset    the record's position in its log (the idempotent replay key)
 *   i64 ts        milliseconds since the epoch
 *   payload
 *
 * A record is valid when len fits the file, the magic matches and the CRC matches; the first
 * invalid record of a tail marks where a torn or corrupt write begins.
 */
import { crc32c } from '../../common/mod.js';
import { crc32cCombine } from './crc32c-combine.js';

export const RECORD_HEADER = 28;
export const RECORD_MAGIC = 0x53;

export const RecordType = {
  /** An application payload (a message, a batch, a definition). */
  DATA: 1,
  /** Marks the rest of a segment unused. */
  PAD: 2,
  /**
   * A record whose payload was never written because its owner released it before its commit
   * round (a queue message acked while it waited, segment-log.ts "Held records"). The header
   * keeps its offset, timestamp and flags so that the log stays contiguous; the payload is empty.
   */
  ELIDED: 3,
} as const;

/** Upper bound on one record, so a corrupt length can never make a reader allocate gigabytes. */
export const MAX_RECORD_BYTES = 512 * 1024 * 1024;

/** Writes a record header plus payload into `buf` at `pos`; returns the position after it. */
export function encodeRecord(
  buf: Buffer,
  pos: number,
  offset: number,
  ts: number,
  type: number,
  flags: number,
  payload: Uint8Array,
): number {
  const len = RECORD_HEADER - 4 + payload.length;
  buf.writeUInt32LE(len, pos);
  buf[pos + 8] = RECORD_MAGIC;
  buf[pos + 9] = type;
  buf.writeUInt16LE(flags, pos + 10);
  writeU64(buf, pos + 12, offset);
  writeU64(buf, pos + 20, ts);
  buf.set(payload, pos + RECORD_HEADER);
  const end = pos + 4 + len;
  buf.writeUInt32LE(crc32c(buf, pos + 8, end), pos + 4);
  return end;
}

/**
 * Writes only the RECORD_HEADER bytes of a record whose payload is written from `payload`
 * itself, right after the header (a large record written with writev instead of being copied).
 * The CRC still covers header and payload, as encodeRecord's does.
 */
export function encodeRecordHeader(buf: Buffer, pos: number, offset: number, ts: number, type: number, flags: number, payload: Buffer): number {
  buf.writeUInt32LE(RECORD_HEADER - 4 + payload.length, pos);
  buf[pos + 8] = RECORD_MAGIC;
  buf[pos + 9] = type;
  buf.writeUInt16LE(flags, pos + 10);
  writeU64(buf, pos + 12, offset);
  writeU64(buf, pos + 20, ts);
  const end = pos + RECORD_HEADER;
  buf.writeUInt32LE(crc32cCombine(crc32c(buf, pos + 8, end), crc32c(payload), payload.length), pos + 4);
  return end;
}

/** Size on disk of a record with a payload of `payloadLength` bytes. */
export function recordSize(payloadLength: number): number {
  return RECORD_HEADER + payloadLength;
}

export const RecordCheck = {
  OK: 0,
  /** Not enough bytes in the buffer to judge; read more. */
  SHORT: 1,
  /** A zero length: the unwritten (preallocated or never-written) tail. */
  END: 2,
  BAD_LENGTH: 3,
  BAD_MAGIC: 4,
  BAD_CRC: 5,
} as const;
export type RecordCheckResult = (typeof RecordCheck)[keyof typeof RecordCheck];

/** Validates the record at `pos` in buf[0, end). Returns a RecordCheck value. */
export function checkRecord(buf: Buffer, pos: number, end: number): RecordCheckResult {
  if (end - pos < 4) return RecordCheck.SHORT;
  const len = buf.readUInt32LE(pos);
  if (len === 0) return RecordCheck.END;
  if (len < RECORD_HEADER - 4 || len > MAX_RECORD_BYTES) return RecordCheck.BAD_LENGTH;
  if (end - pos < 4 + len) return RecordCheck.SHORT;
  if (buf[pos + 8] !== RECORD_MAGIC) return RecordCheck.BAD_MAGIC;
  if (crc32c(buf, pos + 8, pos + 4 + len) !== buf.readUInt32LE(pos + 4)) return RecordCheck.BAD_CRC;
  return RecordCheck.OK;
}

export function recordLength(buf: Buffer, pos: number): number {
  return 4 + buf.readUInt32LE(pos);
}
export function recordType(buf: Buffer, pos: number): number {
  return buf[pos + 9]!;
}
export function recordFlags(buf: Buffer, pos: number): number {
  return buf.readUInt16LE(pos + 10);
}
export function recordOffset(buf: Buffer, pos: number): number {
  return readU64(buf, pos + 12);
}
export function recordTimestamp(buf: Buffer, pos: number): number {
  return readU64(buf, pos + 20);
}
export function recordPayload(buf: Buffer, pos: number): Buffer {
  return buf.subarray(pos + RECORD_HEADER, pos + 4 + buf.readUInt32LE(pos));
}

/** Offsets and timestamps stay below 2^53, so a double holds them exactly; avoids BigInt on the hot path. */
export function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32LE(v >>> 0, pos);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), pos + 4);
}
export function readU64(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos) + buf.readUInt32LE(pos + 4) * 0x1_0000_0000;
}

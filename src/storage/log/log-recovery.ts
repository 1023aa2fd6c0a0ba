/**
 * Opening a SegmentLog's directory: segments with a valid index are trusted (segment.ts: an
 * index is written only once its segment is durable), the others are scanned and truncated at
 * their first bad record, and unreadable ones are moved aside. Split from segment-log.ts, which
 * owns the segments once they are open.
 */
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { CorruptSegment } from '../../common/mod.js';
import { datasync, truncateFd } from '../io.js';
import { parseSegmentFileName, Segment } from './segment.js';

export interface LogRecoveryReport {
  log: string;
  /** Bytes cut from segment tails that failed validation. */
  truncatedBytes: number;
  /** Segment files that could not be read at all, moved aside with a `.corrupt` suffix. */
  quarantined: string[];
  problems: string[];
  /** Records restored from the journal. */
  replayed: number;
}

export interface RecoveredSegments {
  segments: Segment[];
  /**
   * Offsets of the ELIDED records in the scanned segments (record.ts). Their owner released
   * them before they were written, but may have lost the note saying so in the crash (a queue's
   * ack file is written in the same round as the record, not before it).
   */
  elided: number[];
}

/**
 * Opens every segment in `dir`, oldest first: scans the ones without a valid index (normally
 * only the last) and truncates each at its first bad record. `trustLastIndex` is set after a
 * clean shutdown, when the last segment's index was written at close.
 */
export async function recoverSegments(
  dir: string,
  indexInterval: number,
  trustLastIndex: boolean,
  report: LogRecoveryReport,
): Promise<RecoveredSegments> {
  const bases: number[] = [];
  for (const n of await readdir(dir)) {
    const b = parseSegmentFileName(n);
    if (b !== null) bases.push(b);
  }
  bases.sort((a, b) => a - b);
  const out: RecoveredSegments = { segments: [], elided: [] };
  for (let i = 0; i < bases.length; i++) {
    const base = bases[i]!;
    const isLast = i === bases.length - 1;
    const seg = await openSegment(dir, indexInterval, base, isLast, trustLastIndex, report, out.elided);
    if (seg !== null) out.segments.push(seg);
  }
  return out;
}

async function openSegment(
  dir: string,
  indexInterval: number,
  base: number,
  isLast: boolean,
  trustIndex: boolean,
  report: LogRecoveryReport,
  elided: number[],
): Promise<Segment | null> {
  const probe = new Segment(dir, base, indexInterval);
  const hdr = await Segment.readIndexHeader(probe.indexPath, base);
  // The index vouches for the records, not for the file's format or length: check those too.
  let fileSize = -1;
  if (hdr !== null && (!isLast || trustIndex)) {
    try {
      fileSize = await Segment.verifyHeader(probe.path, base);
    } catch (e) {
      if (!(e instanceof CorruptSegment)) throw e;
      return quarantine(probe, e, report);
    }
  }
  if (hdr !== null && (!isLast || trustIndex) && fileSize === hdr.readUInt32LE(32)) {
    const seg = Segment.sealedFromIndexHeader(dir, base, indexInterval, hdr);
    if (isLast) {
      // It will be appended to again, so its index stops describing it.
      await seg.loadIndex();
      seg.sealed = false;
      await rm(seg.indexPath, { force: true });
    }
    return seg;
  }
  if (hdr !== null) await rm(probe.indexPath, { force: true }); // it no longer describes the file
  fileSize = (await stat(probe.path)).size;
  try {
    const r = await probe.scan(fileSize);
    if (r.end < fileSize) {
      report.truncatedBytes += fileSize - r.end;
      report.problems.push(`${probe.path}: ${r.problem ?? 'bad tail'}; truncated ${fileSize - r.end} bytes at ${r.end}`);
      await truncateFd(probe.fd, r.end);
      await datasync(probe.fd);
    }
    for (const o of r.elided) elided.push(o);
    if (!isLast) {
      probe.sealed = true;
      // The index says "complete and durable" (segment.ts), so the data goes to disk first.
      await datasync(probe.fd);
      await probe.writeIndex();
      await probe.close();
    }
    return probe;
  } catch (e) {
    await probe.close();
    if (!(e instanceof CorruptSegment)) throw e;
    return quarantine(probe, e, report);
  }
}

/** Moves an unreadable segment aside with a `.corrupt` suffix and reports it. */
async function quarantine(probe: Segment, e: CorruptSegment, report: LogRecoveryReport): Promise<null> {
  const aside = `${probe.path}.corrupt`;
  await rename(probe.path, aside);
  await rm(probe.indexPath, { force: true });
  report.quarantined.push(aside);
  report.problems.push(e.message);
  return null;
}

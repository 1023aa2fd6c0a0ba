/**
 * The file writes of one SegmentLog's part of a commit round: its pending chunks, in order,
 * then the fdatasyncs the round asks for. The log decides what goes in a round; this only
 * writes it.
 */
import { datasync, fsyncDir, openFile, writevAt, writevAtSync } from '../io.js';
import { encodeSegmentHeader, type Segment } from './segment.js';

/** Chunks up to this size are written synchronously (page cache only; see io.ts writevAtSync). */
const SYNC_WRITE_MAX = 256 * 1024;

/** Appended records waiting for a round, as runs of bytes per segment file. */
export interface PendingChunk {
  seg: Segment;
  /** File position of the chunk's first byte. */
  pos: number;
  bufs: Buffer[];
  bytes: number;
  /** The chunk begins a new segment file, so the header goes first. */
  create: boolean;
  /** It holds a record other than ELIDED ones (something that must be durable). */
  data: boolean;
}

/**
 * Writes the round's chunks synchronously if they all go to one open segment in small pieces,
 * and returns true; else writes nothing and returns false (writeChunks does it).
 */
export function writeInline(chunks: PendingChunk[]): boolean {
  const seg = chunks[0]!.seg;
  if (seg.fd < 0) return false;
  for (const c of chunks) if (c.create || c.seg !== seg || c.bytes > SYNC_WRITE_MAX) return false;
  for (const c of chunks) writevAtSync(seg.fd, c.bufs, c.pos);
  seg.dirty = true;
  return true;
}

/** Any round: new segment files, large chunks, older segments still to sync. */
export async function writeChunks(dir: string, chunks: PendingChunk[], sync: boolean, syncOld: Segment[]): Promise<void> {
  // Let the round submit the journal write first: it is the one the round waits on.
  await null;
  // Sequential on purpose: a segment's bytes reach the file before the next segment's, so
  // only the newest segment can have a torn tail after kill -9.
  for (const c of chunks) {
    if (c.create) {
      c.seg.fd = await openFile(c.seg.path, 'w+');
      await fsyncDir(dir);
      await writevAt(c.seg.fd, [encodeSegmentHeader(c.seg.base), ...c.bufs], 0);
    } else {
      const fd = await c.seg.ensureFd();
      if (c.bytes <= SYNC_WRITE_MAX) writevAtSync(fd, c.bufs, c.pos);
      else await writevAt(fd, c.bufs, c.pos);
    }
    c.seg.dirty = true;
  }
  if (sync) {
    let last: Segment | null = null;
    for (const c of chunks) {
      if (c.seg === last) continue;
      last = c.seg;
      await datasync(await c.seg.ensureFd());
    }
  }
  for (const s of syncOld) {
    if (s.removed || chunks.some((c) => c.seg === s && sync)) continue;
    try {
      await s.use(datasync);
    } catch (e) {
      if (!s.removed) throw e;
    }
  }
}

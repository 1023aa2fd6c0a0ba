// Shared by the storage contract, crash and memory suites: fresh temp dirs, payloads whose
// content says which record they are, and a check that a record is the one it claims to be.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { crc32c } from '../../src/common/mod.js';
import type { LogRecord, QueueStore, SegmentLog } from '../../src/storage/mod.js';

export class TempDirs {
  readonly #dirs: string[] = [];
  constructor(readonly prefix: string) {}
  fresh(): string {
    const d = mkdtempSync(join(tmpdir(), `sluice-${this.prefix}-`));
    this.#dirs.push(d);
    return d;
  }
  cleanup(): void {
    for (const d of this.#dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * The payload of record `i`: u32 i | u32 crc32c of the rest | filler whose length varies with i
 * (0..maxFill bytes) and whose bytes depend on i. Any mix-up of records shows in the check.
 */
export function payloadFor(i: number, maxFill = 300): Buffer {
  return payloadWithFill(i, (i * 7919) % (maxFill + 1));
}

/** A payloadFor() payload of 64-200 KiB: large enough to be a held record of a queue log. */
export function largePayloadFor(i: number): Buffer {
  return payloadWithFill(i, 64 * 1024 + ((i * 7919) % (136 * 1024)));
}

function payloadWithFill(i: number, fill: number): Buffer {
  const b = Buffer.allocUnsafe(8 + fill);
  b.writeUInt32LE(i >>> 0, 0);
  for (let k = 0; k < fill; k++) b[8 + k] = (i * 31 + k * 17) & 0xff;
  b.writeUInt32LE(crc32c(b, 8, b.length), 4);
  return b;
}

/** The counter inside a payload made by payloadFor, after checking its CRC. */
export function checkPayload(p: Buffer): number {
  assert.ok(p.length >= 8, `payload of ${p.length} bytes is too short`);
  assert.equal(crc32c(p, 8, p.length), p.readUInt32LE(4), 'payload CRC');
  return p.readUInt32LE(0);
}

/** Hands out every ready message (filling from disk as needed); their payload counters, in order. */
export async function drainCounters(store: QueueStore): Promise<number[]> {
  const out: number[] = [];
  for (;;) {
    let m = store.shift();
    if (m === null && store.readyCount > 0) {
      await store.fill();
      m = store.shift();
    }
    if (m === null) return out;
    out.push(checkPayload(m.payload));
  }
}

/** Every record from the log's start to its end, read in batches. */
export async function readAll(log: SegmentLog, maxBytes = 64 * 1024): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let next = log.startOffset;
  while (next < log.nextOffset) {
    const recs = await log.readBatch(next, maxBytes);
    if (recs.length === 0) break;
    for (const r of recs) out.push({ ...r, payload: Buffer.from(r.payload) });
    next = recs[recs.length - 1]!.offset + 1;
  }
  return out;
}

/** A small deterministic PRNG, so a failing sequence can be replayed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

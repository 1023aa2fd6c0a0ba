// Large records and held records (segment-log.ts "Held records", file-queue-store.ts): a large
// payload is written from the caller's buffer with a combined CRC, a held record is neither
// written nor confirmed until its gate lets it go (or its hold runs out), an elided record keeps
// its offset with no payload, and a queue never writes a large message acked before its round,
// never loses one it confirmed, and never delivers an elided one, across clean and crash reopens.
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { DURABILITY_VALUES, FileQueueStore, RecordType, Storage, type Durability, type SegmentLog, type StorageOptions } from '../../src/storage/mod.js';
import { Placement, type PlacementValue } from '../../src/storage/log/segment-log.js';
import { TempDirs, checkPayload, drainCounters, largePayloadFor, payloadFor, readAll, tick } from './storage-helpers.js';

const tmp = new TempDirs('held-records');
afterEach(() => tmp.cleanup());

const LARGE = 70 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await sleep(ms);
  return done;
}

async function openLog(dir: string, durability: Durability, opts: StorageOptions = {}, segmentBytes = 8 * 1024 * 1024, minRecordsPerSegment = 1): Promise<{ storage: Storage; log: SegmentLog }> {
  const { storage } = await Storage.open(dir, opts);
  const log = await storage.openLog('l', { durability, segmentBytes, minRecordsPerSegment });
  return { storage, log };
}

/** flushed() and, for 'none', until the bytes are in the files. */
async function written(log: SegmentLog): Promise<void> {
  await log.flushed();
  if (log.nextOffset > 0) await log.waitForOffset(log.nextOffset - 1);
}

for (const durability of DURABILITY_VALUES) {
  describe(`SegmentLog large and held records (${durability})`, () => {
    for (const journal of [false, true]) {
      test(`appendRetained round-trips large and small payloads across clean and crash reopens (${journal ? 'journal' : 'direct'} fsync)`, async () => {
        const dir = tmp.fresh();
        const opts: StorageOptions = { directSyncMaxLogs: journal ? 0 : 2 };
        let { storage, log } = await openLog(dir, durability, opts, 256 * 1024);
        const want: Buffer[] = [];
        for (let i = 0; i < 24; i++) {
          const p = i % 3 === 0 ? payloadFor(i) : largePayloadFor(i);
          want.push(p);
          assert.equal(log.appendRetained(p, 1_700_000_000_000 + i, i), i);
        }
        await written(log);
        for (const how of ['abandon', 'clean', 'abandon'] as const) {
          if (how === 'clean') await storage.close();
          else await storage.abandon();
          ({ storage } = await Storage.open(dir, opts));
          log = storage.getLog('l')!;
          const recs = await readAll(log, 1024 * 1024);
          // A wrong CRC would have made recovery cut the log at the first large record.
          assert.equal(recs.length, want.length, `after ${how}: every record is still there`);
          for (const r of recs) {
            assert.equal(r.type, RecordType.DATA);
            assert.equal(r.flags, r.offset);
            assert.equal(r.ts, 1_700_000_000_000 + r.offset);
            assert.equal(checkPayload(r.payload), r.offset);
            assert.ok(r.payload.equals(want[r.offset]!));
          }
        }
        await storage.close();
      });
    }

    test('a held record is not written and flushed() waits until the gate lets it go; the records after it wait too', async () => {
      const { storage, log } = await openLog(tmp.fresh(), durability);
      let decision: PlacementValue = Placement.HOLD;
      log.setWriteGate(() => decision, 60_000);
      log.appendRetained(largePayloadFor(0));
      log.appendRetained(payloadFor(1)); // small, but behind the held one
      log.append(payloadFor(2)); // a plain append too
      const f = written(log);
      assert.equal(await settlesWithin(f, 50), false, 'not stored while held');
      assert.equal(log.writtenOffset, 0);
      assert.equal(log.heldCount, 3);
      decision = Placement.WRITE;
      log.reconsiderHeld();
      await f;
      assert.equal(log.writtenOffset, 3);
      assert.equal(log.heldCount, 0);
      const recs = await readAll(log, 1024 * 1024);
      assert.deepEqual(recs.map((r) => checkPayload(r.payload)), [0, 1, 2]);
      await storage.close();
    });

    test('a hold lasts at most maxHoldMs, then the record is written whatever the gate says', async () => {
      const { storage, log } = await openLog(tmp.fresh(), durability);
      log.setWriteGate(() => Placement.HOLD, 40);
      const t0 = performance.now();
      log.appendRetained(largePayloadFor(7));
      await written(log);
      const ms = performance.now() - t0;
      assert.ok(ms >= 35, `written after ${ms.toFixed(1)} ms, before its hold ran out`);
      assert.ok(ms < 2000, `written only after ${ms.toFixed(1)} ms`);
      const r = await log.read(0);
      assert.equal(r?.type, RecordType.DATA);
      assert.equal(checkPayload(r!.payload), 7);
      await storage.close();
    });

    test('an elided record keeps its offset, flags and timestamp with no payload; a crash reopen reports it', async () => {
      const dir = tmp.fresh();
      let { storage, log } = await openLog(dir, durability);
      log.setWriteGate(() => Placement.ELIDE, 60_000);
      log.appendRetained(largePayloadFor(0), 1_700_000_000_123, 5);
      log.appendRetained(payloadFor(1), 1_700_000_000_124, 6); // small: never elided
      await written(log);
      assert.ok(log.sizeBytes < 1024, `${log.sizeBytes} bytes on disk: the large payload was written`);
      const r0 = await log.read(0);
      assert.deepEqual({ type: r0?.type, len: r0?.payload.length, ts: r0?.ts, flags: r0?.flags }, { type: RecordType.ELIDED, len: 0, ts: 1_700_000_000_123, flags: 5 });
      assert.equal((await log.read(1))?.type, RecordType.DATA);
      await storage.abandon();
      ({ storage } = await Storage.open(dir));
      log = storage.getLog('l')!;
      assert.deepEqual(log.takeElidedAtOpen(), [0], 'recovery scanned it');
      assert.deepEqual(log.takeElidedAtOpen(), [], 'reported once');
      assert.equal((await log.read(0))?.type, RecordType.ELIDED);
      assert.equal(checkPayload((await log.read(1))!.payload), 1);
      await storage.close();
    });

    test('a read in a removed range waits for the next segment to be written rather than open a file not yet created', async () => {
      const { storage, log } = await openLog(tmp.fresh(), durability, {}, 100 * 1024);
      log.appendRetained(largePayloadFor(0)); // segment 0
      await written(log);
      let decision: PlacementValue = Placement.HOLD;
      log.setWriteGate(() => decision, 60_000);
      log.appendRetained(largePayloadFor(1)); // rolls to segment 1, whose file waits for this record
      assert.equal(log.segmentCount, 2);
      assert.ok(await log.removeSegment(0), 'segment 0 is sealed and written: it can go');
      const read = log.readBatch(0, 1024 * 1024);
      assert.equal(await settlesWithin(read, 30), false, 'waits for the held record');
      decision = Placement.WRITE;
      log.reconsiderHeld();
      const recs = await read;
      assert.deepEqual(recs.map((r) => r.offset), [1]);
      assert.equal(checkPayload(recs[0]!.payload), 1);
      await storage.close();
    });

    test('minRecordsPerSegment grows segments for large records; the default keeps one large record per segment', async () => {
      const grown = await openLog(tmp.fresh(), durability, {}, 64 * 1024, 4);
      const plain = await openLog(tmp.fresh(), durability, {}, 64 * 1024);
      for (let i = 0; i < 8; i++) {
        grown.log.appendRetained(largePayloadFor(i));
        plain.log.appendRetained(largePayloadFor(i));
      }
      // A small record after large ones does not roll a grown segment early.
      grown.log.appendRetained(payloadFor(8));
      await written(grown.log);
      await written(plain.log);
      assert.equal(plain.log.segmentCount, 8);
      assert.equal(grown.log.segmentCount, 2);
      assert.deepEqual(grown.log.segmentBases(), [0, 4]);
      await grown.storage.close();
      await plain.storage.close();
    });
  });
}

describe('FileQueueStore: large messages', () => {
  async function openQueue(dir: string, elideWaitMs = 40, segmentBytes?: number): Promise<{ storage: Storage; store: FileQueueStore; log: SegmentLog }> {
    const { storage } = await Storage.open(dir);
    const opts = segmentBytes === undefined ? { elideWaitMs } : { elideWaitMs, segmentBytes, minRecordsPerSegment: 1 };
    const { store } = await storage.openQueue('q', { durability: 'fsync', ...opts });
    return { storage, store, log: storage.getLog('q')! };
  }

  test('acked before its round, a large message is confirmed without being written and never comes back', async () => {
    const dir = tmp.fresh();
    let { storage, store, log } = await openQueue(dir);
    const ref = store.enqueue(largePayloadFor(1));
    const m = store.shift()!;
    assert.equal(m.ref, ref);
    store.ack(ref);
    const t0 = performance.now();
    await store.flushed();
    assert.ok(performance.now() - t0 < 35, 'confirmed at once, not after its hold');
    assert.ok(log.sizeBytes < 1024, `${log.sizeBytes} bytes on disk`);
    assert.equal((await log.read(ref))?.type, RecordType.ELIDED);
    for (const how of ['abandon', 'clean'] as const) {
      await store.close();
      if (how === 'clean') await storage.close();
      else await storage.abandon();
      ({ storage, store, log } = await openQueue(dir));
      assert.equal(store.readyCount, 0, `after ${how}`);
      assert.deepEqual(await drainCounters(store), []);
    }
    await store.close();
    await storage.close();
  });

  test('held by a consumer that does not ack, a large message is written once its hold runs out and survives a crash', async () => {
    const dir = tmp.fresh();
    let { storage, store } = await openQueue(dir, 40);
    store.enqueue(largePayloadFor(2));
    store.shift(); // handed out, never acked
    const t0 = performance.now();
    await store.flushed();
    const ms = performance.now() - t0;
    assert.ok(ms >= 35, `confirmed after ${ms.toFixed(1)} ms, before it was written`);
    await storage.abandon();
    await store.close();
    ({ storage, store } = await openQueue(dir));
    assert.equal(store.readyCount, 1);
    assert.deepEqual(await drainCounters(store), [2]);
    await store.close();
    await storage.close();
  });

  test('a requeued message is let go at once, and so is everything when the store closes', async () => {
    const dir = tmp.fresh();
    let { storage, store } = await openQueue(dir, 60_000);
    const a = store.enqueue(largePayloadFor(3));
    store.shift();
    store.requeue(a);
    assert.equal(await settlesWithin(store.flushed(), 1000), true, 'requeued: written without waiting for its hold');
    assert.deepEqual(await drainCounters(store), [3]);
    store.enqueue(largePayloadFor(4)); // ready in the window while message 3 is handed out: held
    const f = store.flushed();
    assert.equal(await settlesWithin(f, 30), false, 'held while a consumer works');
    await store.close();
    await f;
    await storage.close();
    ({ storage, store } = await openQueue(dir));
    assert.deepEqual(await drainCounters(store), [3, 4]);
    await store.close();
    await storage.close();
  });

  test('while a consumer keeps one message, the rest still flow: held ones are written when their hold ends, disk-only ones behind them then', async () => {
    const dir = tmp.fresh();
    let { storage, store } = await openQueue(dir, 40);
    store.enqueue(largePayloadFor(0));
    store.shift(); // kept, never acked
    // The window takes some of these (held while the consumer works), the rest are only on disk.
    for (let i = 1; i <= 40; i++) store.enqueue(largePayloadFor(i));
    assert.ok(store.stats().buffered < 40, 'some are only on disk');
    const t0 = performance.now();
    await store.flushed();
    const ms = performance.now() - t0;
    assert.ok(ms >= 35 && ms < 3000, `confirmed after ${ms.toFixed(1)} ms`);
    assert.deepEqual(await drainCounters(store), Array.from({ length: 40 }, (_, k) => k + 1));
    await storage.abandon();
    await store.close();
    ({ storage, store } = await openQueue(dir));
    assert.deepEqual(await drainCounters(store), Array.from({ length: 41 }, (_, k) => k));
    await store.close();
    await storage.close();
  });

  test('an ELIDED record whose ack was lost is never delivered nor counted (crash reopen and clean reopen)', async () => {
    // Built by hand: the ELIDED record is in the log, its ack is not in the ack file.
    for (const how of ['abandon', 'clean'] as const) {
      const dir = tmp.fresh();
      let { storage, store, log } = await openQueue(dir, 40, 16 * 1024);
      store.enqueue(payloadFor(0));
      log.append(Buffer.alloc(0), Date.now(), 0, RecordType.ELIDED);
      for (let i = 2; i < 40; i++) store.enqueue(payloadFor(i, 3000)); // rolls: the ELIDED one ends up in a sealed segment
      await store.flushed();
      await storage.committer.settled();
      assert.ok(log.segmentCount > 1);
      await store.close();
      if (how === 'clean') await storage.close();
      else await storage.abandon();
      ({ storage, store, log } = await openQueue(dir, 40, 16 * 1024));
      const got = await drainCounters(store);
      assert.deepEqual(got, [0, ...Array.from({ length: 38 }, (_, k) => k + 2)], `after ${how}`);
      assert.equal(store.readyCount, 0, `after ${how}: nothing left counted as ready`);
      assert.equal(store.unackedCount, 39);
      await storage.committer.settled();
      assert.ok(readdirSync(log.dir).some((n) => n.endsWith('.acks')), 'its ack is on file now');
      await store.close();
      await storage.close();
    }
  });
});

test('closing a queue store writes what it holds, so the committer holds nothing after it', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const { store } = await storage.openQueue('q', { durability: 'fsync', elideWaitMs: 60_000 });
  store.enqueue(largePayloadFor(9));
  store.shift();
  // The round that finds the record held runs a loop turn or two later.
  for (let i = 0; i < 100 && storage.committer.holders === 0; i++) await tick();
  assert.equal(storage.committer.holders, 1);
  await store.close(); // writes it
  assert.equal(storage.committer.holders, 0);
  await storage.close();
});

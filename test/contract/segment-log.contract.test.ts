// One contract for SegmentLog under every durability policy. The tests see only the log and a
// subject that knows how to stop (cleanly or not) and start again on the same directory.
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { DURABILITY_VALUES, RecordType, Storage, type Durability, type SegmentLog, type LogRecord } from '../../src/storage/mod.js';
import { TempDirs, payloadFor, checkPayload, readAll, tick, rng } from './storage-helpers.js';

const tmp = new TempDirs('log-contract');
afterEach(() => tmp.cleanup());

interface Opened {
  storage: Storage;
  log: SegmentLog;
  dir: string;
}

async function openLog(durability: Durability, opts: { segmentBytes?: number; indexInterval?: number } = {}): Promise<Opened> {
  const dir = tmp.fresh();
  const { storage } = await Storage.open(dir);
  const log = await storage.openLog('l', { durability, ...opts });
  return { storage, log, dir };
}

/** Stop and start again on the same directory; returns the new log and the recovery report. */
async function reopen(o: Opened, how: 'clean' | 'abandon'): Promise<Opened & { report: Awaited<ReturnType<typeof Storage.open>>['report'] }> {
  if (how === 'clean') await o.storage.close();
  else await o.storage.abandon();
  const { storage, report } = await Storage.open(o.dir);
  const log = storage.getLog('l');
  assert.ok(log, 'the log is there after reopen');
  return { storage, log, dir: o.dir, report };
}

function stripped(recs: LogRecord[]): Array<{ offset: number; ts: number; flags: number; type: number; payload: string }> {
  return recs.map((r) => ({ offset: r.offset, ts: r.ts, flags: r.flags, type: r.type, payload: r.payload.toString('hex') }));
}

function appendN(log: SegmentLog, from: number, n: number, maxFill = 300): number[] {
  const offs: number[] = [];
  for (let i = from; i < from + n; i++) offs.push(log.append(payloadFor(i, maxFill), 1_700_000_000_000 + i, i & 0xffff));
  return offs;
}

/** flushed() and, for 'none' (whose flushed() resolves at once), until the bytes are in the files. */
async function written(log: SegmentLog): Promise<void> {
  await log.flushed();
  if (log.nextOffset > 0) await log.waitForOffset(log.nextOffset - 1);
  assert.equal(log.writtenOffset, log.nextOffset);
}

function segFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.seg'));
}

for (const durability of DURABILITY_VALUES) {
  describe(`SegmentLog contract (${durability})`, () => {
    test('append returns consecutive offsets and read gives each record back', async () => {
      const o = await openLog(durability);
      assert.equal(o.log.nextOffset, 0);
      assert.equal(o.log.startOffset, 0);
      const offs = appendN(o.log, 0, 50);
      assert.deepEqual(offs, [...Array(50).keys()]);
      assert.equal(o.log.nextOffset, 50);
      await written(o.log);
      for (let i = 0; i < 50; i++) {
        const r = await o.log.read(i);
        assert.ok(r, `record ${i}`);
        assert.equal(r.offset, i);
        assert.equal(r.ts, 1_700_000_000_000 + i);
        assert.equal(r.flags, i);
        assert.equal(r.type, RecordType.DATA);
        assert.equal(checkPayload(r.payload), i);
        assert.deepEqual(r.payload, payloadFor(i));
      }
      assert.equal(await o.log.read(50), null, 'past the end');
      assert.equal(await o.log.read(1000), null);
      await o.storage.close();
    });

    test('an empty payload and a custom type round-trip', async () => {
      const o = await openLog(durability);
      const a = o.log.append(Buffer.alloc(0), 5, 0xffff, 7);
      const b = o.log.append(Buffer.from('x'), 6);
      await written(o.log);
      assert.deepEqual(stripped([(await o.log.read(a))!, (await o.log.read(b))!]), [
        { offset: 0, ts: 5, flags: 0xffff, type: 7, payload: '' },
        { offset: 1, ts: 6, flags: 0, type: RecordType.DATA, payload: '78' },
      ]);
      await o.storage.close();
    });

    test('readBatch honours maxRecords and maxBytes, returns at least one record, and starts mid-segment', async () => {
      const o = await openLog(durability, { indexInterval: 256 });
      appendN(o.log, 0, 200);
      await written(o.log);
      const five = await o.log.readBatch(10, 1 << 20, 5);
      assert.deepEqual(five.map((r) => r.offset), [10, 11, 12, 13, 14]);
      // maxBytes smaller than one record still yields that record.
      const one = await o.log.readBatch(37, 1);
      assert.deepEqual(one.map((r) => r.offset), [37]);
      // A byte budget: the records returned fit in it (the first always counts).
      const budget = 2000;
      const some = await o.log.readBatch(100, budget);
      assert.ok(some.length >= 1);
      assert.equal(some[0]!.offset, 100);
      let bytes = 0;
      for (const [k, r] of some.entries()) {
        assert.equal(r.offset, 100 + k);
        bytes += 28 + r.payload.length;
      }
      assert.ok(some.length === 1 || bytes <= budget, `${bytes} bytes in a ${budget}-byte batch`);
      // and the batch is not cut short: the next record would not have fitted.
      const next = await o.log.readBatch(100 + some.length, 1 << 20, 1);
      assert.ok(bytes + 28 + next[0]!.payload.length > budget);
      // Everything, in batches of every size.
      for (const maxBytes of [1, 100, 1000, 5000, 1 << 20]) {
        const all = await readAll(o.log, maxBytes);
        assert.deepEqual(all.map((r) => checkPayload(r.payload)), [...Array(200).keys()], `maxBytes ${maxBytes}`);
      }
      assert.deepEqual(await o.log.readBatch(200, 1 << 20), [], 'at the end');
      await o.storage.close();
    });

    test('readSync gives the same records as read, in any order, across segments and after reopen', async () => {
      const o = await openLog(durability, { indexInterval: 256, segmentBytes: 16 * 1024 });
      // Sizes up to 3000 bytes: some records are larger than the 1 KiB scratch buffer.
      const offs: number[] = [];
      for (let i = 0; i < 300; i++) offs.push(o.log.append(payloadFor(i, i % 10 === 0 ? 3000 : 300), 1_700_000_000_000 + i, i));
      assert.equal(o.log.readSync(offs[299]!, Buffer.alloc(1024)), undefined, 'appended, not written yet: use read()');
      await written(o.log);
      assert.ok(o.log.segmentCount > 3, 'several segments');
      const scratch = Buffer.alloc(1024);
      const rand = rng(7);
      const order = [...offs];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      let inline = 0;
      for (const off of order) {
        const r = o.log.readSync(off, scratch);
        if (r === undefined) continue; // a segment whose descriptor is not open yet
        inline++;
        assert.ok(r, `record ${off}`);
        assert.equal(r.offset, off);
        assert.equal(r.ts, 1_700_000_000_000 + off);
        assert.equal(r.flags, off);
        assert.deepEqual(r.payload, payloadFor(off, off % 10 === 0 ? 3000 : 300));
      }
      assert.ok(inline > 0, 'the segment being written is read inline');
      assert.equal(o.log.readSync(300, scratch), null, 'past the end');
      const r = await reopen(o, 'clean');
      // Sealed segments load their index and open lazily: the first read goes through read().
      for (const off of offs) {
        const got = r.log.readSync(off, scratch) ?? (await r.log.read(off));
        assert.equal(got?.offset, off);
        assert.equal(checkPayload(got!.payload), off);
      }
      let after = 0;
      for (const off of offs) if (r.log.readSync(off, scratch) !== undefined) after++;
      assert.equal(after, offs.length, 'inline once each segment has been read');
      await r.storage.close();
    });

    test('offsets stay consecutive across segment rolls and readBatch never crosses a segment', async () => {
      const o = await openLog(durability, { segmentBytes: 4096, indexInterval: 512 });
      appendN(o.log, 0, 500);
      await written(o.log);
      const bases = o.log.segmentBases();
      assert.ok(bases.length > 10, `${bases.length} segments`);
      assert.equal(bases[0], 0);
      assert.equal(segFiles(o.log.dir).length, bases.length);
      for (let k = 0; k < bases.length; k++) {
        const range = o.log.segmentRange(bases[k]!)!;
        assert.equal(range.end, k + 1 < bases.length ? bases[k + 1] : 500);
        const batch = await o.log.readBatch(bases[k]!, 1 << 20);
        assert.deepEqual(batch.map((r) => r.offset), [...Array(range.end - range.base).keys()].map((x) => x + range.base));
      }
      for (let i = 0; i < 500; i += 7) assert.equal(checkPayload((await o.log.read(i))!.payload), i);
      assert.ok(o.log.sizeBytes > 4096 * (bases.length - 1) * 0.5);
      await o.storage.close();
    });

    test('a record larger than segmentBytes gets a segment of its own', async () => {
      const o = await openLog(durability, { segmentBytes: 1024 });
      appendN(o.log, 0, 3, 100);
      const big = Buffer.alloc(200_000);
      for (let k = 0; k < big.length; k++) big[k] = (k * 13) & 0xff;
      const bigOff = o.log.append(big, 42);
      const after = o.log.append(Buffer.from('after'), 43);
      await written(o.log);
      assert.equal(o.log.segmentRange(bigOff)!.base, bigOff);
      assert.equal(o.log.segmentRange(bigOff)!.end, bigOff + 1);
      assert.equal(o.log.segmentRange(after)!.base, after);
      const r = (await o.log.read(bigOff))!;
      assert.equal(r.payload.length, big.length);
      assert.ok(r.payload.equals(big));
      assert.equal((await o.log.read(after))!.payload.toString(), 'after');
      // Reading across it in small batches.
      const all = await readAll(o.log, 100);
      assert.deepEqual(all.map((x) => x.offset), [0, 1, 2, 3, 4]);
      const o2 = await reopen(o, 'clean');
      assert.ok((await o2.log.read(bigOff))!.payload.equals(big));
      await o2.storage.close();
    });

    test('waitForOffset and readBatch follow the tail while records arrive', async () => {
      const o = await openLog(durability, { segmentBytes: 8192 });
      const total = 2000;
      const seen: number[] = [];
      const follower = (async () => {
        let next = 0;
        while (next < total) {
          await o.log.waitForOffset(next);
          const recs = await o.log.readBatch(next, 4096);
          for (const r of recs) {
            assert.equal(r.offset, next, 'in order, no gaps');
            seen.push(checkPayload(r.payload));
            next++;
          }
        }
      })();
      const r = rng(7);
      for (let i = 0; i < total; ) {
        const n = 1 + Math.floor(r() * 40);
        appendN(o.log, i, Math.min(n, total - i));
        i += Math.min(n, total - i);
        if (r() < 0.5) await tick();
        else await written(o.log);
      }
      await follower;
      assert.deepEqual(seen, [...Array(total).keys()]);
      await o.storage.close();
    });

    test('readBatch of an appended but not yet written offset waits for that offset', async () => {
      const o = await openLog(durability);
      for (let attempt = 0; attempt < 50; attempt++) {
        const first = o.log.append(payloadFor(attempt * 2));
        await tick(); // the round carrying `first` is now in flight
        const second = o.log.append(payloadFor(attempt * 2 + 1)); // joins the next round
        const recs = await o.log.readBatch(second, 1 << 20);
        assert.deepEqual(recs.map((x) => x.offset), [second], `attempt ${attempt}: first ${first}`);
      }
      await o.storage.close();
    });

    test('a reader of a segment that is being sealed always gets the right records', async () => {
      const o = await openLog(durability, { segmentBytes: 2048, indexInterval: 256 });
      let appended = 0;
      let stop = false;
      const writer = (async () => {
        while (!stop) {
          appendN(o.log, appended, 5, 200);
          appended += 5;
          await written(o.log);
          await tick();
        }
      })();
      // Readers keep re-reading the newest complete segments while new ones are sealed.
      const reader = async (): Promise<void> => {
        for (let k = 0; k < 400; k++) {
          const bases = o.log.segmentBases();
          const base = bases[Math.max(0, bases.length - 2)]!;
          const written = o.log.writtenOffset;
          if (written <= base) {
            await tick();
            continue;
          }
          const recs = await o.log.readBatch(base, 1 << 20);
          for (const [j, r] of recs.entries()) {
            assert.equal(r.offset, base + j);
            assert.equal(checkPayload(r.payload), r.offset);
          }
        }
      };
      await Promise.all([reader(), reader(), reader()]);
      stop = true;
      await writer;
      assert.deepEqual((await readAll(o.log)).map((r) => checkPayload(r.payload)), [...Array(appended).keys()]);
      await o.storage.close();
    });

    test('retention by bytes deletes whole old segments, never the active one', async () => {
      const o = await openLog(durability, { segmentBytes: 2048 });
      appendN(o.log, 0, 300, 100);
      await written(o.log);
      const before = o.log.segmentBases();
      const total = o.log.sizeBytes;
      assert.ok(before.length > 5);
      assert.equal(await o.log.applyRetention({ maxBytes: total * 10 }), 0, 'under the limit: nothing');
      const deleted = await o.log.applyRetention({ maxBytes: 6000 });
      const after = o.log.segmentBases();
      assert.ok(deleted > 0);
      assert.deepEqual(after, before.slice(deleted), 'oldest first, whole segments');
      assert.ok(o.log.sizeBytes >= 6000, 'what is left still covers the limit');
      assert.ok(o.log.sizeBytes - (o.log.segmentRange(after[0]!) ? 2048 : 0) < 6000 + 2048);
      assert.equal(o.log.startOffset, after[0]);
      assert.deepEqual(segFiles(o.log.dir).sort(), after.map((b) => `${String(b).padStart(20, '0')}.seg`));
      assert.equal(await o.log.read(0), null, 'deleted records are gone');
      const first = await o.log.readBatch(0, 1 << 20, 1);
      assert.equal(first[0]!.offset, after[0], 'a read below the start continues at the start');
      // A limit of 0 still keeps the active segment.
      await o.log.applyRetention({ maxBytes: 0 });
      assert.equal(o.log.segmentCount, 1);
      assert.equal(o.log.segmentBases()[0], before[before.length - 1]);
      assert.equal(checkPayload((await o.log.read(299))!.payload), 299);
      // Appends continue with the next offset.
      assert.equal(o.log.append(payloadFor(300)), 300);
      await written(o.log);
      // Let background sealing finish, then no .idx may be left without its .seg.
      const o2 = await reopen(o, 'clean');
      const names = readdirSync(o2.log.dir);
      for (const n of names.filter((x) => x.endsWith('.idx'))) assert.ok(names.includes(n.replace('.idx', '.seg')), `stray ${n}`);
      assert.equal(o2.log.startOffset, before[before.length - 1]);
      assert.equal(o2.log.nextOffset, 301);
      await o2.storage.close();
    });

    test('retention by age deletes segments whose newest record is too old, never the active one', async () => {
      const o = await openLog(durability, { segmentBytes: 2048 });
      const now = 2_000_000_000_000;
      for (let i = 0; i < 100; i++) o.log.append(payloadFor(i, 100), now - 10 * 60_000 + i); // ten minutes old
      const firstNew = o.log.nextOffset;
      for (let i = 100; i < 200; i++) o.log.append(payloadFor(i, 100), now - 1000 + i);
      await written(o.log);
      await o.log.applyRetention({ maxAgeMs: 5 * 60_000 }, now);
      const start = o.log.startOffset;
      assert.ok(start > 0 && start <= firstNew, `start ${start}, first new ${firstNew}`);
      // Every remaining segment but possibly the one holding the boundary is new.
      assert.ok((await o.log.read(firstNew)) !== null);
      // Everything old, even the active segment: the active one stays.
      const n = await o.log.applyRetention({ maxAgeMs: 0 }, now + 10 * 60_000);
      assert.ok(n > 0);
      assert.equal(o.log.segmentCount, 1);
      assert.equal(checkPayload((await o.log.read(199))!.payload), 199);
      await o.storage.close();
    });

    for (const how of ['clean', 'abandon'] as const) {
      test(`write, ${how === 'clean' ? 'close' : 'abandon()'}, reopen, compare`, async () => {
        const o = await openLog(durability, { segmentBytes: 8192, indexInterval: 1024 });
        // Several rounds, with rolls in between.
        for (let round = 0; round < 10; round++) {
          appendN(o.log, round * 60, 60);
          if (round % 3 === 0) await tick();
        }
        await written(o.log);
        const expected = await readAll(o.log);
        assert.equal(expected.length, 600);
        const o2 = await reopen(o, how);
        if (how === 'clean') {
          assert.equal(o2.report.clean, true);
          assert.deepEqual(o2.report.logs, [], 'nothing to repair after a clean close');
        } else {
          assert.equal(o2.report.clean, false);
        }
        const got = await readAll(o2.log);
        if (durability === 'none' && how === 'abandon') {
          // Nothing was promised; what is there must be an intact prefix.
          assert.deepEqual(stripped(got), stripped(expected.slice(0, got.length)));
        } else {
          assert.deepEqual(stripped(got), stripped(expected));
          assert.equal(o2.log.nextOffset, 600);
        }
        assert.equal(o2.log.segmentBases()[0], 0);
        // It keeps going where it stopped, and survives a second reopen.
        const next = o2.log.nextOffset;
        const more = appendN(o2.log, next, 100);
        assert.equal(more[0], next);
        await written(o2.log);
        const all = await readAll(o2.log);
        const o3 = await reopen(o2, how);
        if (!(durability === 'none' && how === 'abandon')) assert.deepEqual(stripped(await readAll(o3.log)), stripped(all));
        await o3.storage.close();
      });
    }

    test('several logs share one storage and keep their own offsets', async () => {
      const dir = tmp.fresh();
      const { storage } = await Storage.open(dir);
      const logs = await Promise.all(['a', 'b', 'c'].map((n) => storage.openLog(n, { durability, segmentBytes: 4096 })));
      assert.equal(await storage.openLog('a'), logs[0], 'opening again gives the same log');
      for (let i = 0; i < 300; i++) logs[i % 3]!.append(payloadFor(i));
      await Promise.all(logs.map((l) => written(l)));
      await storage.abandon();
      const { storage: s2 } = await Storage.open(dir);
      assert.deepEqual(s2.logNames().sort(), ['a', 'b', 'c']);
      for (const [k, name] of ['a', 'b', 'c'].entries()) {
        const got = (await readAll(s2.getLog(name)!)).map((r) => checkPayload(r.payload));
        const want = [...Array(100).keys()].map((j) => j * 3 + k);
        if (durability === 'none') assert.deepEqual(got, want.slice(0, got.length));
        else assert.deepEqual(got, want);
      }
      assert.equal(await s2.deleteLog('b'), true);
      assert.equal(existsSync(`${dir}/logs/00000002`), false);
      await s2.close();
      const { storage: s3 } = await Storage.open(dir);
      assert.deepEqual(s3.logNames().sort(), ['a', 'c']);
      const fresh = await s3.openLog('b', { durability });
      assert.equal(fresh.nextOffset, 0, 'a deleted name starts over');
      assert.notEqual(fresh.id, 2, 'ids are never reused');
      await s3.close();
    });
  });
}

describe('transient logs', () => {
  test("a 'none' log is created without fsyncs, and its id is not reused after a crash while its directory exists", async () => {
    const dir = tmp.fresh();
    const { storage } = await Storage.open(dir);
    const durable = await storage.openLog('d', { durability: 'fsync' });
    const transient = await storage.openLog('t', { durability: 'none' });
    transient.append(Buffer.from('x'));
    await transient.flushed();
    await storage.abandon();
    // NEXT_ID on disk was last written for 'd'; the directory of 't' is still there.
    const { storage: s2 } = await Storage.open(dir);
    assert.ok(s2.getLog('t'), 'the transient log is recovered (the broker deletes it at start)');
    const next = await s2.openLog('n', { durability: 'fsync' });
    assert.ok(next.id > transient.id && next.id > durable.id, `new id ${next.id} after ${durable.id} and ${transient.id}`);
    assert.ok(await s2.deleteLog('t'));
    assert.equal(s2.getLog('t'), undefined);
    await s2.close();
  });
});

// One contract for every ScheduleStore implementation and durability policy. The tests see
// only the ScheduleStore interface and an injected ManualClock; the subject decides what
// "open" and "reopen" mean. File-store specifics (what sits in memory, bucket files, segment
// reclamation, a million entries) follow the contract.
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ManualClock } from '../../src/common/mod.js';
import { Storage } from '../../src/storage/storage.js';
import type { ScheduledEntry, ScheduleStore } from '../../src/storage/schedule/schedule-store.js';
import { FileScheduleStore, type ScheduleStoreOptions } from '../../src/storage/schedule/file-schedule-store.js';
import { MemoryScheduleStore } from '../../src/storage/memory/memory-schedule-store.js';

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const YEAR = 365 * 24 * HOUR;

interface Subject {
  name: string;
  durable: boolean;
  open(dir: string, clock: ManualClock, opts?: ScheduleStoreOptions): Promise<ScheduleStore>;
  /** Stop everything and start again on the same data (memory: the same instance). */
  reopen(store: ScheduleStore, dir: string, clock: ManualClock, opts?: ScheduleStoreOptions): Promise<ScheduleStore>;
  close(store: ScheduleStore): Promise<void>;
}

function fileSubject(durability: 'fsync' | 'os'): Subject {
  const storages = new Map<ScheduleStore, Storage>();
  const open = async (dir: string, clock: ManualClock, opts: ScheduleStoreOptions = {}): Promise<ScheduleStore> => {
    const { storage } = await Storage.open(dir);
    const { store, report } = await FileScheduleStore.open(storage, 'delays', { durability, clock, ...opts });
    // A store that was closed cleanly never needs repair.
    assert.equal(report.reindexed, 0);
    assert.equal(report.droppedIndexEntries, 0);
    assert.deepEqual(report.repairedBuckets, []);
    storages.set(store, storage);
    return store;
  };
  const close = async (store: ScheduleStore): Promise<void> => {
    await store.close();
    const storage = storages.get(store);
    storages.delete(store);
    await storage?.close();
  };
  return {
    name: `FileScheduleStore (${durability})`,
    durable: true,
    open,
    close,
    async reopen(store, dir, clock, opts) {
      await close(store);
      return open(dir, clock, opts);
    },
  };
}

const subjects: Subject[] = [
  fileSubject('fsync'),
  fileSubject('os'),
  {
    name: 'MemoryScheduleStore',
    durable: false,
    open: async () => new MemoryScheduleStore('delays'),
    reopen: async (store) => store,
    close: (store) => store.close(),
  },
];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

const body = (s: string): Buffer => Buffer.from(s, 'utf8');
const brief = (es: ScheduledEntry[]): Array<[number, number, string, string]> => es.map((e) => [e.id, e.dueAt, e.group, e.payload.toString()]);

/** Takes everything due at `now`, in batches of `batch`, and marks it done. */
async function drain(store: ScheduleStore, now: number, batch = 1000): Promise<ScheduledEntry[]> {
  const out: ScheduledEntry[] = [];
  for (;;) {
    const got = await store.takeDue(now, batch);
    if (got.length === 0) return out;
    for (const e of got) {
      out.push(e);
      store.done(e.id);
    }
  }
}

for (const subject of subjects) {
  describe(`ScheduleStore contract: ${subject.name}`, () => {
    const dirs: string[] = [];
    const open: ScheduleStore[] = [];
    const fresh = (): string => {
      const d = mkdtempSync(join(tmpdir(), 'sluice-schedule-contract-'));
      dirs.push(d);
      return d;
    };
    const track = (s: ScheduleStore): ScheduleStore => {
      open.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await subject.close(s).catch(() => undefined);
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    });
    const reopen = async (store: ScheduleStore, dir: string, clock: ManualClock, opts?: ScheduleStoreOptions): Promise<ScheduleStore> => {
      open.splice(open.indexOf(store), 1);
      return track(await subject.reopen(store, dir, clock, opts));
    };

    test('fires in due order, ties by id, at most max, each once', async () => {
      const clock = new ManualClock(T0);
      const store = track(await subject.open(fresh(), clock));
      assert.equal(store.nextDueAt(), null);
      const a = store.add(T0 + 300, 'x', body('a'));
      const b = store.add(T0 + 100, 'x', body('b'));
      const c = store.add(T0 + 200, 'y', body('c'));
      const d = store.add(T0 + 100, 'y', body('d')); // ties with b: b has the lower id
      const e = store.add(T0 - 50, 'x', body('e')); // already due
      await store.flushed();
      assert.ok(b < d && a < b);
      assert.equal(store.nextDueAt(), T0 - 50);

      assert.deepEqual(brief(await store.takeDue(T0, 10)), [[e, T0 - 50, 'x', 'e']]);
      assert.deepEqual(await store.takeDue(T0, 10), [], 'a taken entry is not handed out again');
      assert.equal(store.nextDueAt(), T0 + 100);
      assert.deepEqual(await store.takeDue(T0 + 99, 10), []);

      clock.set(T0 + 250);
      assert.deepEqual(brief(await store.takeDue(clock.now(), 2)), [
        [b, T0 + 100, 'x', 'b'],
        [d, T0 + 100, 'y', 'd'],
      ]);
      assert.deepEqual(brief(await store.takeDue(clock.now(), 2)), [[c, T0 + 200, 'y', 'c']]);
      // Taken entries stay stored and counted until done.
      assert.equal(store.count(), 5);
      for (const id of [e, b, d, c]) store.done(id);
      store.done(b); // twice: ignored
      assert.equal(store.count(), 1);
      assert.equal(store.nextDueAt(), T0 + 300);
      clock.set(T0 + 300);
      assert.deepEqual(brief(await store.takeDue(clock.now(), 10)), [[a, T0 + 300, 'x', 'a']]);
      store.done(a);
      await store.flushed();
      assert.equal(store.count(), 0);
      assert.equal(store.nextDueAt(), null);
    });

    test('release puts a taken entry back; cancel removes pending or taken entries', async () => {
      const clock = new ManualClock(T0);
      const store = track(await subject.open(fresh(), clock));
      const ids = [0, 1, 2, 3].map((i) => store.add(T0 + i, 'g', body(`m${i}`)));
      const got = await store.takeDue(T0 + 10, 2);
      assert.deepEqual(got.map((x) => x.id), [ids[0], ids[1]]);
      store.release(ids[0]!);
      assert.equal(store.cancel(ids[1]!), true, 'a taken entry can be cancelled');
      assert.equal(store.cancel(ids[2]!), true, 'a pending entry can be cancelled');
      assert.equal(store.cancel(ids[2]!), false);
      assert.equal(store.cancel(12345), false);
      assert.equal(store.count('g'), 2);
      assert.deepEqual((await store.takeDue(T0 + 10, 10)).map((x) => x.id), [ids[0], ids[3]]);
      await store.flushed();
    });

    test('counts per group, and browse in due order with group, limit and paging', async () => {
      const clock = new ManualClock(T0);
      const store = track(await subject.open(fresh(), clock));
      const r = rng(7);
      const added: Array<{ id: number; dueAt: number; group: string }> = [];
      for (let i = 0; i < 300; i++) {
        const group = ['ex.a', 'ex.b', 'ëx.ç', ''][i % 4]!;
        // Spread over a year, with repeats so that ties occur.
        const dueAt = T0 + Math.floor(r() * 40) * (YEAR / 40);
        added.push({ id: store.add(dueAt, group, body(`p${i}`)), dueAt, group });
      }
      await store.flushed();
      for (const e of added.filter((_, i) => i % 5 === 0)) store.cancel(e.id);
      const live = added.filter((_, i) => i % 5 !== 0).sort((x, y) => x.dueAt - y.dueAt || x.id - y.id);
      const expectCounts = new Map<string, number>();
      for (const e of live) expectCounts.set(e.group, (expectCounts.get(e.group) ?? 0) + 1);
      assert.deepEqual(store.groupCounts(), expectCounts);
      assert.equal(store.count(), live.length);
      assert.equal(store.count('ex.b'), expectCounts.get('ex.b'));
      assert.equal(store.count('nope'), 0);

      const all = await store.browse({ limit: 10_000 });
      assert.deepEqual(all.map((e) => e.id), live.map((e) => e.id));
      assert.equal(all[0]!.payload.toString(), `p${added.findIndex((a) => a.id === all[0]!.id)}`);
      const onlyC = await store.browse({ group: 'ëx.ç', limit: 10_000 });
      assert.deepEqual(onlyC.map((e) => e.id), live.filter((e) => e.group === 'ëx.ç').map((e) => e.id));
      assert.ok(onlyC.every((e) => e.group === 'ëx.ç'));
      assert.deepEqual(await store.browse({ group: 'nope', limit: 10 }), []);

      // Page through in tens.
      const paged: number[] = [];
      let from: ScheduledEntry | undefined;
      for (;;) {
        const page = await store.browse(from ? { limit: 10, fromDueAt: from.dueAt, afterId: from.id } : { limit: 10 });
        if (page.length === 0) break;
        assert.ok(page.length <= 10);
        paged.push(...page.map((e) => e.id));
        from = page[page.length - 1];
      }
      assert.deepEqual(paged, live.map((e) => e.id));
      await store.flushed();
    });

    test('far-future entries (a year ahead) fire when the clock reaches them', async () => {
      const clock = new ManualClock(T0);
      const dir = fresh();
      let store = track(await subject.open(dir, clock));
      const far = store.add(T0 + YEAR, 'late', body('a year later'));
      const near = store.add(T0 + 1000, 'soon', body('soon'));
      const mid = store.add(T0 + 30 * 24 * HOUR, 'late', body('next month'));
      await store.flushed();
      if (store instanceof FileScheduleStore) {
        assert.equal(store.memoryStats().heapEntries, 1, 'only the near entry is in memory');
      }
      const wake = store.nextDueAt();
      assert.ok(wake !== null && wake <= T0 + 1000);
      clock.advance(1000);
      assert.deepEqual((await drain(store, clock.now())).map((e) => e.id), [near]);
      // The next wake-up is never later than the next entry.
      const w2 = store.nextDueAt();
      assert.ok(w2 !== null && w2 <= T0 + 30 * 24 * HOUR);
      assert.deepEqual(await store.takeDue(T0 + 29 * 24 * HOUR, 10), []);

      store = await reopen(store, dir, clock);
      assert.equal(store.count('late'), 2);
      clock.set(T0 + 30 * 24 * HOUR);
      assert.deepEqual(brief(await drain(store, clock.now())), [[mid, T0 + 30 * 24 * HOUR, 'late', 'next month']]);
      clock.set(T0 + YEAR - 1);
      assert.deepEqual(await store.takeDue(clock.now(), 10), []);
      clock.set(T0 + YEAR);
      assert.deepEqual(brief(await drain(store, clock.now())), [[far, T0 + YEAR, 'late', 'a year later']]);
      await store.flushed();
      assert.equal(store.count(), 0);
      assert.equal(store.nextDueAt(), null);
    });

    test('write, close, reopen, compare: pending entries, counts and order survive; done ones stay done', async () => {
      const clock = new ManualClock(T0);
      const dir = fresh();
      // Small buckets so that entries spread over many bucket files.
      const opts: ScheduleStoreOptions = { bucketMs: 10_000, preloadMs: 1000 };
      let store = track(await subject.open(dir, clock, opts));
      const r = rng(42);
      const model = new Map<number, { dueAt: number; group: string; payload: string }>();
      for (let round = 0; round < 3; round++) {
        const keptTaken: number[] = [];
        for (let i = 0; i < 400; i++) {
          const dueAt = clock.now() + Math.floor(r() * 120_000) - 5000;
          const group = `g${Math.floor(r() * 5)}`;
          const payload = `r${round}-${i}-${'x'.repeat(Math.floor(r() * 50))}`;
          model.set(store.add(dueAt, group, body(payload)), { dueAt, group, payload });
        }
        // Fire what is due, cancel some far ones, leave some taken-but-not-done.
        clock.advance(20_000);
        const got = await store.takeDue(clock.now(), 10_000);
        for (const [k, e] of got.entries()) {
          assert.deepEqual(model.get(e.id), { dueAt: e.dueAt, group: e.group, payload: e.payload.toString() });
          if (k % 7 === 0) {
            keptTaken.push(e.id); // taken, never done: pending again after a restart
            continue;
          }
          store.done(e.id);
          model.delete(e.id);
        }
        for (const id of [...model.keys()].filter((_, k) => k % 11 === 0)) {
          assert.equal(store.cancel(id), true);
          model.delete(id);
        }
        await store.flushed();
        store = await reopen(store, dir, clock, opts);
        const expected = [...model.entries()]
          .map(([id, e]) => [id, e.dueAt, e.group, e.payload] as [number, number, string, string])
          .sort((x, y) => x[1] - y[1] || x[0] - y[0]);
        assert.deepEqual(brief(await store.browse({ limit: 1_000_000 })), expected, `round ${round}`);
        assert.equal(store.count(), model.size);
        const counts = new Map<string, number>();
        for (const e of model.values()) counts.set(e.group, (counts.get(e.group) ?? 0) + 1);
        assert.deepEqual(store.groupCounts(), counts);
        // Taken-but-not-done entries are handed out again after a real restart only.
        if (subject.durable) {
          const due = expected.filter((e) => e[1] <= clock.now());
          const again = await store.takeDue(clock.now(), 100_000);
          assert.deepEqual(brief(again), due);
          for (const e of again) store.release(e.id);
        } else {
          for (const id of keptTaken) store.release(id); // what a restart does to taken entries
        }
      }
      // Drain everything in due order.
      clock.advance(10 * 60_000);
      const rest = await drain(store, clock.now(), 97);
      const order = [...model.entries()].sort((x, y) => x[1].dueAt - y[1].dueAt || x[0] - y[0]).map(([id]) => id);
      assert.deepEqual(rest.map((e) => e.id), order);
      await store.flushed();
      store = await reopen(store, dir, clock, opts);
      assert.equal(store.count(), 0);
      assert.deepEqual(await store.takeDue(clock.now() + YEAR, 10), []);
    });

    test('entries added after their bucket was loaded, and before, fire exactly once', async () => {
      const clock = new ManualClock(T0);
      const store = track(await subject.open(fresh(), clock, { bucketMs: 1000, preloadMs: 200 }));
      const ids: number[] = [];
      const want: Array<[number, number]> = [];
      const r = rng(3);
      for (let step = 0; step < 50; step++) {
        for (let i = 0; i < 20; i++) {
          const dueAt = clock.now() + Math.floor(r() * 3000);
          const id = store.add(dueAt, 'g', body(`${step}.${i}`));
          ids.push(id);
          want.push([dueAt, id]);
        }
        if (step % 3 === 0) await store.flushed(); // some entries are written before their bucket loads, some not
        clock.advance(100);
        for (const e of await store.takeDue(clock.now(), 1_000_000)) store.done(e.id);
      }
      clock.advance(5000);
      for (const e of await store.takeDue(clock.now(), 1_000_000)) store.done(e.id);
      await store.flushed();
      assert.equal(store.count(), 0);
      assert.equal(store.nextDueAt(), null);
    });
  });
}

describe('FileScheduleStore specifics', () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'sluice-schedule-file-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test('bucket files and done segments are deleted once everything in them fired', async () => {
    const clock = new ManualClock(T0);
    const dir = fresh();
    const { storage } = await Storage.open(dir);
    const { store } = await FileScheduleStore.open(storage, 'delays', { clock, bucketMs: 1000, preloadMs: 100, segmentBytes: 64 * 1024 });
    const payload = Buffer.alloc(200, 7);
    for (let i = 0; i < 2000; i++) store.add(T0 + (i % 10) * 1000 + (i % 997), `g${i % 3}`, payload);
    await store.flushed();
    const logDir = storage.getLog('schedule:delays')!.dir;
    const files = (): { buckets: number; segments: number } => ({
      buckets: readdirSync(join(logDir, 'time')).filter((n) => n.endsWith('.tix')).length,
      segments: readdirSync(logDir).filter((n) => n.endsWith('.seg')).length,
    });
    const before = files();
    assert.equal(before.buckets, 10);
    assert.ok(before.segments > 4);
    clock.advance(20_000);
    const fired = await drain(store, clock.now(), 333);
    assert.equal(fired.length, 2000);
    await store.flushed();
    await store.flushed(); // housekeeping runs in the round after the marks are written
    const after = files();
    assert.equal(after.buckets, 0);
    assert.equal(after.segments, 1, 'only the last segment stays');
    await store.close();
    await storage.close();
  });

  test('an entry due as soon as it is added is taken from memory, without waiting for its round (fsync)', async () => {
    const clock = new ManualClock(T0);
    const dir = fresh();
    const { storage } = await Storage.open(dir);
    const { store } = await FileScheduleStore.open(storage, 'delays', { clock, durability: 'fsync' });
    // Written and fsynced entries first, so that the new ones follow written ones in the log.
    for (let i = 0; i < 100; i++) store.add(T0 + 60_000, 'later', Buffer.from(`w${i}`));
    await store.flushed();
    const payloads: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      payloads.push(Buffer.from(`now ${i}`));
      store.add(T0 - 300 + i, i % 2 === 0 ? 'a' : 'b', payloads[i]!);
    }
    let roundEnded = false;
    const flushed = store.flushed().then(() => (roundEnded = true));
    const got = await store.takeDue(T0, 1000);
    assert.equal(roundEnded, false, 'taken before the entries were written');
    assert.deepEqual(
      got.map((e) => [e.dueAt, e.group, e.payload.toString()]),
      payloads.map((p, i) => [T0 - 300 + i, i % 2 === 0 ? 'a' : 'b', p.toString()]),
    );
    for (const e of got) store.done(e.id);
    await flushed;
    // Entries added while none is due are let go as their rounds end, too.
    for (let i = 0; i < 5000; i++) store.add(T0 + 3_600_000 + i, 'far', Buffer.alloc(100));
    assert.ok(store.unwrittenCount >= 5000);
    await store.flushed();
    store.add(T0 + 7_200_000, 'far', Buffer.alloc(100));
    assert.ok(store.unwrittenCount <= 1, `at most the entry just added is kept (${store.unwrittenCount})`);
    // Once written, the rest is read from the log as before.
    clock.advance(60_000);
    const later = await store.takeDue(clock.now(), 1000);
    assert.deepEqual(later.map((e) => e.payload.toString()), Array.from({ length: 100 }, (_, i) => `w${i}`));
    await store.close();
    await storage.close();
  });

  test('1,000,000 entries due within 60 s: memory stays small, all fire in due order (batches of 50,000)', { timeout: 600_000 }, async () => {
    const clock = new ManualClock(T0);
    const dir = fresh();
    const { storage } = await Storage.open(dir);
    const { store } = await FileScheduleStore.open(storage, 'delays', { clock });
    const N = 1_000_000;
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const base = process.memoryUsage();
    const r = rng(99);
    const payload = Buffer.alloc(16, 1);
    let t = Date.now();
    for (let i = 0; i < N; i++) {
      store.add(T0 + Math.floor(r() * 60_000), `ex${i % 10}`, payload);
      if (i % 10_000 === 9_999) await store.flushed();
    }
    await store.flushed();
    const addMs = Date.now() - t;
    gc?.();
    const full = process.memoryUsage();
    const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`;
    const growth = {
      heapUsed: full.heapUsed - base.heapUsed,
      external: full.external - base.external, // includes array buffers (typed arrays)
      rss: full.rss - base.rss,
    };
    assert.equal(store.count(), N);
    assert.equal(store.count('ex3'), N / 10);

    clock.advance(60_000);
    t = Date.now();
    let n = 0;
    let lastDue = -Infinity;
    let lastId = -1;
    for (;;) {
      const got = await store.takeDue(clock.now(), 50_000);
      if (got.length === 0) break;
      for (const e of got) {
        assert.ok(e.dueAt > lastDue || (e.dueAt === lastDue && e.id > lastId), 'due order');
        lastDue = e.dueAt;
        lastId = e.id;
        store.done(e.id);
      }
      n += got.length;
      await store.flushed();
    }
    const drainMs = Date.now() - t;
    assert.equal(n, N);
    assert.equal(store.count(), 0);
    console.log(
      `# schedule 1M: add ${addMs} ms, drain ${drainMs} ms; growth after gc: JS heap ${mb(growth.heapUsed)}, ` +
        `external incl. typed arrays ${mb(growth.external)}, RSS ${mb(growth.rss)} (gc ${gc ? 'on' : 'off'})`,
    );
    // The store's in-memory index is typed arrays: 16 B per entry in the heap, 4 B + 1 bit per entry stored.
    assert.ok(growth.heapUsed < 30 * 1048576, `JS heap grew ${mb(growth.heapUsed)}`);
    assert.ok(growth.rss < 150 * 1048576, `RSS grew ${mb(growth.rss)}`);
    await store.close();
    await storage.close();
  });
});

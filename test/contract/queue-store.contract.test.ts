// One contract for every QueueStore: FileQueueStore under each durability policy, and
// MemoryQueueStore. The tests see only the QueueStore interface; the subject decides what
// "open" and "reopen" mean (the memory store has no reopen, so those tests are file-only).
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import {
  DURABILITY_VALUES,
  FileQueueStore,
  MemoryQueueStore,
  PriorityQueueStore,
  Storage,
  type Durability,
  type QueueStore,
  type StoredMessage,
} from '../../src/storage/mod.js';
import { TempDirs, payloadFor, checkPayload, tick, rng } from './storage-helpers.js';

const tmp = new TempDirs('queue-contract');
afterEach(() => tmp.cleanup());

interface Options {
  segmentBytes?: number;
  minRecordsPerSegment?: number;
  memoryWindowBytes?: number;
  readAheadBytes?: number;
}

interface Handle {
  store: QueueStore;
  /** The FileQueueStore's storage, for file-only checks. */
  storage: Storage | null;
  dir: string | null;
}

interface Subject {
  name: string;
  durable: boolean;
  open(opts?: Options): Promise<Handle>;
  /** Stop (clean or crash) and start again on the same data. */
  reopen(h: Handle, how: 'clean' | 'abandon', opts?: Options): Promise<Handle>;
  close(h: Handle): Promise<void>;
}

function fileSubject(durability: Durability): Subject {
  const openIn = async (dir: string, opts: Options): Promise<Handle> => {
    const { storage } = await Storage.open(dir);
    const { store, report } = await storage.openQueue('q', { durability, ...opts });
    assert.equal(report.orphanAcks, 0);
    return { store, storage, dir };
  };
  return {
    name: `FileQueueStore (${durability})`,
    durable: true,
    open: (opts = {}) => openIn(tmp.fresh(), opts),
    async reopen(h, how, opts = {}) {
      if (how === 'clean') {
        await h.store.close();
        await h.storage!.close();
      } else {
        await h.storage!.abandon();
        await h.store.close();
      }
      return openIn(h.dir!, opts);
    },
    async close(h) {
      await h.store.close();
      await h.storage!.close();
    },
  };
}

/**
 * A priority store of three file-backed levels: messages enqueued without a priority all go to
 * level 0, so it must behave as one FIFO store (refs are packed, hence no file-name checks).
 */
function prioritySubject(): Subject {
  const openIn = async (dir: string, opts: Options): Promise<Handle & { inner: Storage }> => {
    const { storage } = await Storage.open(dir);
    const levels = [];
    for (let i = 0; i < 3; i++) levels.push((await storage.openQueue(`q#p${i}`, { durability: 'fsync', ...opts })).store);
    return { store: new PriorityQueueStore('q', levels), storage: null, dir, inner: storage };
  };
  const inner = new WeakMap<Handle, Storage>();
  const open = async (dir: string, opts: Options): Promise<Handle> => {
    const h = await openIn(dir, opts);
    const out: Handle = { store: h.store, storage: null, dir };
    inner.set(out, h.inner);
    return out;
  };
  return {
    name: 'PriorityQueueStore (3 file levels)',
    // The reopen and reclamation checks read the log named 'q' directly; the levels' own logs are
    // covered by the FileQueueStore subjects.
    durable: false,
    open: (opts = {}) => open(tmp.fresh(), opts),
    async reopen(h, how, opts = {}) {
      if (how === 'clean') {
        await h.store.close();
        await inner.get(h)!.close();
      } else {
        await inner.get(h)!.abandon();
        await h.store.close();
      }
      return open(h.dir!, opts);
    },
    async close(h) {
      await h.store.close();
      await inner.get(h)!.close();
    },
  };
}

const subjects: Subject[] = [
  ...DURABILITY_VALUES.map(fileSubject),
  prioritySubject(),
  {
    name: 'MemoryQueueStore',
    durable: false,
    open: async () => ({ store: new MemoryQueueStore('q'), storage: null, dir: null }),
    reopen: async (h) => h,
    close: async (h) => h.store.close(),
  },
];

/** The next ready message, filling from disk when the store asks for it. */
async function take(store: QueueStore): Promise<StoredMessage | null> {
  for (let i = 0; i < 1000; i++) {
    const m = store.shift();
    if (m !== null) return m;
    if (store.readyCount === 0) return null;
    await store.fill();
  }
  throw new Error(`shift() keeps returning null with readyCount ${store.readyCount}`);
}

async function takeAll(store: QueueStore): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for (let m = await take(store); m !== null; m = await take(store)) out.push({ ...m, payload: Buffer.from(m.payload) });
  return out;
}

function enqueueN(store: QueueStore, from: number, n: number): number[] {
  const refs: number[] = [];
  for (let i = from; i < from + n; i++) refs.push(store.enqueue(payloadFor(i, 200), 1_700_000_000_000 + i, i & 0xff));
  return refs;
}

/** Counters inside the payloads. */
const ids = (ms: StoredMessage[]): number[] => ms.map((m) => checkPayload(m.payload));

/** Small windows and read-ahead, so the file store really goes to disk. */
const SMALL: Options = { memoryWindowBytes: 2048, readAheadBytes: 4096 };

for (const subject of subjects) {
  describe(`QueueStore contract: ${subject.name}`, () => {
    test('peek shows what shift gives next without handing it out; forEachReady sees ready messages only', async () => {
      const h = await subject.open(SMALL);
      try {
        const refs = enqueueN(h.store, 0, 50);
        await h.store.flushed();
        let p: StoredMessage | null = null;
        for (let i = 0; i < 100 && p === null; i++) {
          p = h.store.peek();
          if (p === null) await h.store.fill();
        }
        assert.ok(p !== null);
        assert.equal(checkPayload(p.payload), 0);
        assert.equal(h.store.readyCount, 50);
        const first = await take(h.store);
        assert.equal(first!.ref, p.ref);
        h.store.discard(refs[10]!);
        const seen: number[] = [];
        await h.store.forEachReady((payload, _ref, flags) => {
          seen.push(checkPayload(payload));
          assert.equal(flags, checkPayload(payload) & 0xff);
        });
        assert.deepEqual(seen.sort((a, b) => a - b), [...Array(50).keys()].filter((i) => i !== 0 && i !== 10));
        const tail: number[] = [];
        // Enqueue times are 1_700_000_000_000 + i: a window of 9 ms from the last covers 40..49.
        await h.store.forEachInTail(9, (payload) => tail.push(checkPayload(payload)));
        assert.deepEqual(tail.sort((a, b) => a - b), [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
      } finally {
        await subject.close(h);
      }
    });

    test('enqueue then shift gives every message back in order with its fields', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      assert.equal(store.readyCount, 0);
      assert.equal(await take(store), null);
      const refs = enqueueN(store, 0, 300);
      assert.equal(new Set(refs).size, 300);
      assert.equal(store.readyCount, 300);
      await store.flushed();
      const got: StoredMessage[] = [];
      for (let i = 0; i < 300; i++) {
        const m = (await take(store))!;
        assert.equal(m.ref, refs[i]);
        assert.equal(m.ts, 1_700_000_000_000 + i);
        assert.equal(m.flags, i & 0xff);
        assert.equal(m.redelivered, false);
        assert.equal(checkPayload(m.payload), i);
        got.push(m);
        assert.equal(store.readyCount, 300 - i - 1);
        assert.equal(store.unackedCount, i + 1);
      }
      assert.equal(await take(store), null);
      for (const m of got) store.ack(m.ref);
      assert.equal(store.unackedCount, 0);
      assert.deepEqual(
        { live: store.stats().live, ready: store.stats().ready, unacked: store.stats().unacked },
        { live: 0, ready: 0, unacked: 0 },
      );
      await subject.close(h);
    });

    test('messages enqueued while a consumer keeps up are all delivered once, in order', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      const r = rng(3);
      const seen: number[] = [];
      let next = 0;
      while (next < 2000 || store.readyCount > 0) {
        if (next < 2000) {
          const n = Math.min(1 + Math.floor(r() * 30), 2000 - next);
          enqueueN(store, next, n);
          next += n;
        }
        if (r() < 0.3) await store.flushed();
        else if (r() < 0.5) await tick();
        for (let k = Math.floor(r() * 40); k > 0; k--) {
          const m = await take(store);
          if (m === null) break;
          seen.push(checkPayload(m.payload));
          store.ack(m.ref);
        }
      }
      assert.deepEqual(seen, [...Array(2000).keys()]);
      await subject.close(h);
    });

    test('a requeued message comes back first, at its original position, marked redelivered', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      const refs = enqueueN(store, 0, 20);
      await store.flushed();
      const out: StoredMessage[] = [];
      for (let i = 0; i < 8; i++) out.push((await take(store))!);
      store.requeue(out[5]!.ref);
      store.requeue(out[2]!.ref);
      store.ack(out[0]!.ref);
      assert.equal(store.readyCount, 12 + 2);
      assert.equal(store.unackedCount, 5);
      const a = (await take(store))!;
      const b = (await take(store))!;
      const c = (await take(store))!;
      assert.deepEqual([a.ref, b.ref, c.ref], [refs[2], refs[5], refs[8]]);
      assert.deepEqual([a.redelivered, b.redelivered, c.redelivered], [true, true, false]);
      assert.deepEqual(ids([a, b, c]), [2, 5, 8]);
      // Requeue again after a redelivery: still its original position.
      store.requeue(a.ref);
      const again = (await take(store))!;
      assert.equal(again.ref, refs[2]);
      assert.equal(again.redelivered, true);
      assert.equal(checkPayload(again.payload), 2);
      await subject.close(h);
    });

    test('requeue, ack and discard are no-ops for a ref in the wrong state', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      const refs = enqueueN(store, 0, 6);
      await store.flushed();
      const m0 = (await take(store))!;
      store.requeue(m0.ref);
      store.requeue(m0.ref); // twice (a nack, then the channel closes)
      assert.equal(store.readyCount, 6);
      assert.equal(store.unackedCount, 0);
      const again = (await take(store))!;
      assert.equal(again.ref, refs[0]);
      const m1 = (await take(store))!;
      assert.equal(m1.ref, refs[1], 'the requeued message is delivered once');
      store.ack(m1.ref);
      store.ack(m1.ref); // twice
      assert.equal(store.unackedCount, 1);
      store.discard(again.ref); // handed out: not a ready message
      assert.equal(store.unackedCount, 1);
      assert.equal(store.readyCount, 4);
      store.ack(again.ref);
      assert.equal(store.unackedCount, 0);
      assert.deepEqual(ids(await takeAll(store)), [2, 3, 4, 5]);
      await subject.close(h);
    });

    test('discard removes ready messages, including a requeued one, and never delivers them', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      const refs = enqueueN(store, 0, 100);
      await store.flushed();
      const first = (await take(store))!;
      const second = (await take(store))!;
      store.requeue(first.ref);
      store.discard(first.ref); // ready again, so it can be discarded (expiry of a requeued message)
      store.discard(refs[3]!);
      store.discard(refs[50]!);
      store.discard(refs[99]!);
      store.discard(refs[99]!); // twice
      assert.equal(store.readyCount, 100 - 2 - 3);
      assert.equal(store.unackedCount, 1);
      assert.equal(await store.read(refs[50]!), null);
      const rest = await takeAll(store);
      assert.deepEqual(ids(rest), [...Array(100).keys()].filter((i) => ![0, 1, 3, 50, 99].includes(i)));
      store.ack(second.ref);
      for (const m of rest) store.ack(m.ref);
      assert.equal(store.stats().live, 0);
      await subject.close(h);
    });

    test('purge removes every ready message and leaves the handed-out ones', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      enqueueN(store, 0, 500);
      await store.flushed();
      const out: StoredMessage[] = [];
      for (let i = 0; i < 10; i++) out.push((await take(store))!);
      store.requeue(out[9]!.ref);
      assert.equal(store.purge(), 491);
      assert.equal(store.readyCount, 0);
      assert.equal(store.unackedCount, 9);
      assert.equal(await take(store), null);
      for (const m of out.slice(0, 9)) store.ack(m.ref);
      assert.equal(store.stats().live, 0);
      // The queue goes on after a purge.
      enqueueN(store, 500, 3);
      await store.flushed();
      assert.deepEqual(ids(await takeAll(store)), [500, 501, 502]);
      assert.equal(store.purge(), 0);
      await subject.close(h);
    });

    test('read returns ready and handed-out messages by ref, and null once they are gone', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      const refs = enqueueN(store, 0, 200);
      await store.flushed();
      const m = (await take(store))!;
      for (const i of [0, 1, 77, 199]) {
        const r = (await store.read(refs[i]!))!;
        assert.equal(r.ref, refs[i]);
        assert.equal(checkPayload(r.payload), i);
        assert.equal(r.ts, 1_700_000_000_000 + i);
        assert.equal(r.flags, i & 0xff);
      }
      store.ack(m.ref);
      assert.equal(await store.read(m.ref), null);
      store.discard(refs[77]!);
      assert.equal(await store.read(refs[77]!), null);
      await subject.close(h);
    });

    test('stats agree with the counts', async () => {
      const h = await subject.open(SMALL);
      const { store } = h;
      enqueueN(store, 0, 40);
      await store.flushed();
      const a = (await take(store))!;
      (await take(store))!;
      store.ack(a.ref);
      const s = store.stats();
      assert.equal(s.live, 39);
      assert.equal(s.ready, 38);
      assert.equal(s.unacked, 1);
      assert.ok(s.buffered <= s.ready);
      assert.equal(store.readyCount, 38);
      await subject.close(h);
    });

    if (!subject.durable) return;

    test('segment reclamation: acking everything deletes every segment but the active one, with its acks file', async () => {
      // Many small segments: 4 KiB each, without growing for the records' size.
      const h = await subject.open({ ...SMALL, segmentBytes: 4096, minRecordsPerSegment: 1 });
      const store = h.store as FileQueueStore;
      const log = h.storage!.getLog('q')!;
      enqueueN(store, 0, 400);
      await store.flushed();
      const segments = log.segmentCount;
      assert.ok(segments > 10, `${segments} segments`);
      assert.equal(store.stats().segments, segments);
      // Ack as they come; the acks files appear as segments get acked.
      const all = await takeAll(store);
      for (const m of all.slice(0, 200)) store.ack(m.ref);
      await store.flushed();
      await h.storage!.committer.settled();
      const mid = log.segmentCount;
      assert.ok(mid < segments && mid > 1, `${mid} of ${segments} left half way`);
      for (const m of all.slice(200)) store.ack(m.ref);
      await h.storage!.committer.settled();
      await h.storage!.committer.settled();
      assert.equal(log.segmentCount, 1, 'only the active segment is left');
      assert.equal(store.stats().segments, 1);
      const files = readdirSync(log.dir);
      const active = log.segmentBases()[0]!;
      assert.deepEqual(
        files.filter((n) => n.endsWith('.acks')).filter((n) => Number(n.slice(0, 20)) !== active),
        [],
        'no acks file of a deleted segment',
      );
      assert.deepEqual(files.filter((n) => n.endsWith('.seg')), [`${String(active).padStart(20, '0')}.seg`]);
      // The next message rolls to a new segment; the old fully acked one goes too.
      enqueueN(store, 400, 100);
      await store.flushed();
      for (const m of await takeAll(store)) store.ack(m.ref);
      await h.storage!.committer.settled();
      await h.storage!.committer.settled();
      assert.equal(log.segmentCount, 1);
      await subject.close(h);
    });

    test('segment reclamation works when messages are acked before they are written', async () => {
      const h = await subject.open({ segmentBytes: 2048 });
      const store = h.store;
      const log = h.storage!.getLog('q')!;
      // Enqueue, take and ack in the same turn, so the acks race the log's own writes.
      for (let round = 0; round < 20; round++) {
        enqueueN(store, round * 20, 20);
        for (let m = store.shift(); m !== null; m = store.shift()) store.ack(m.ref);
        await tick();
      }
      await store.flushed();
      await h.storage!.committer.settled();
      await h.storage!.committer.settled();
      assert.equal(store.readyCount, 0);
      assert.equal(log.segmentCount, 1, `${log.segmentCount} segments left`);
      assert.equal(readdirSync(log.dir).filter((n) => n.endsWith('.seg')).length, 1);
      await subject.close(h);
    });

    for (const how of ['clean', 'abandon'] as const) {
      test(`write, ${how === 'clean' ? 'close' : 'abandon()'}, reopen: unacked and ready messages are ready again, acked ones stay gone`, async () => {
        const opts = { ...SMALL, segmentBytes: 8192 };
        const h = await subject.open(opts);
        const { store } = h;
        const refs = enqueueN(store, 0, 300);
        await store.flushed();
        const out: StoredMessage[] = [];
        for (let i = 0; i < 120; i++) out.push((await take(store))!);
        const acked = new Set<number>();
        for (let i = 0; i < 120; i += 2) {
          store.ack(out[i]!.ref);
          acked.add(i);
        }
        store.requeue(out[1]!.ref);
        store.requeue(out[3]!.ref);
        for (const i of [200, 201, 250]) {
          store.discard(refs[i]!);
          acked.add(i);
        }
        await store.flushed();
        // Acks are written in a commit round: wait for it.
        await h.storage!.committer.settled();
        const h2 = await subject.reopen(h, how, opts);
        const expected = [...Array(300).keys()].filter((i) => !acked.has(i));
        assert.equal(h2.store.readyCount, expected.length);
        assert.equal(h2.store.unackedCount, 0);
        const got = await takeAll(h2.store);
        assert.deepEqual(ids(got), expected);
        assert.deepEqual(
          got.map((m) => m.ref),
          expected.map((i) => refs[i]),
          'refs are stable across a restart',
        );
        // Ack half of them, add more, and go round once more.
        for (const m of got.slice(0, 50)) h2.store.ack(m.ref);
        for (const m of got.slice(50)) h2.store.requeue(m.ref);
        enqueueN(h2.store, 300, 10);
        await h2.store.flushed();
        await h2.storage!.committer.settled();
        const h3 = await subject.reopen(h2, how, opts);
        assert.deepEqual(ids(await takeAll(h3.store)), [...expected.slice(50), ...[...Array(10).keys()].map((i) => 300 + i)]);
        await subject.close(h3);
      });
    }

    test('reopen reclaims segments that were fully acked but not yet deleted', async () => {
      const opts = { segmentBytes: 2048 };
      const h = await subject.open(opts);
      const store = h.store;
      enqueueN(store, 0, 200);
      await store.flushed();
      const all = await takeAll(store);
      for (const m of all.slice(0, 150)) store.ack(m.ref);
      await h.storage!.committer.settled();
      const h2 = await subject.reopen(h, 'clean', opts);
      const log = h2.storage!.getLog('q')!;
      assert.equal(log.startOffset, log.segmentRange(all[150]!.ref)!.base);
      assert.deepEqual(ids(await takeAll(h2.store)), [...Array(50).keys()].map((i) => 150 + i));
      for (const n of readdirSync(log.dir).filter((x) => x.endsWith('.acks'))) {
        assert.ok(existsSync(`${log.dir}/${n.replace('.acks', '.seg')}`), `stray ${n}`);
      }
      await subject.close(h2);
    });
  });
}

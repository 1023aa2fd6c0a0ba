// One contract for every MetaStore implementation and durability policy. The tests only see
// the MetaStore interface; the subject decides what "open" and "reopen" mean.
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { SluiceError } from '../../src/common/mod.js';
import type { MetaStore } from '../../src/storage/meta/meta-store.js';
import { FileMetaStore } from '../../src/storage/meta/file-meta-store.js';
import { MemoryMetaStore } from '../../src/storage/memory/memory-meta-store.js';

interface Subject {
  name: string;
  /** Whether it writes files, so rounds and reopen mean something. */
  durable: boolean;
  open(dir: string, compactAfter?: number): Promise<MetaStore>;
  /** Stop and start again on the same data. The memory store has no "again": same instance. */
  reopen(store: MetaStore, dir: string, compactAfter?: number): Promise<MetaStore>;
}

function fileSubject(durability: 'fsync' | 'os'): Subject {
  const open = async (dir: string, compactAfter?: number): Promise<MetaStore> => {
    const { store, report } = await FileMetaStore.open(dir, compactAfter === undefined ? { durability } : { durability, compactAfter });
    // A store that was closed cleanly must never need repair.
    assert.deepEqual(report, { truncatedBytes: 0, droppedRecords: 0, removed: [] });
    return store;
  };
  return {
    name: `FileMetaStore (${durability})`,
    durable: true,
    open,
    async reopen(store, dir, compactAfter) {
      await store.close();
      return open(dir, compactAfter);
    },
  };
}

const subjects: Subject[] = [
  fileSubject('fsync'),
  fileSubject('os'),
  {
    name: 'MemoryMetaStore',
    durable: false,
    open: async () => new MemoryMetaStore(),
    reopen: async (store) => store,
  },
];

/** The state a store should hold, kept by the test alongside it. */
class Model {
  readonly kinds = new Map<string, Map<string, unknown>>();
  put(kind: string, key: string, value: unknown): void {
    if (!this.kinds.has(kind)) this.kinds.set(kind, new Map());
    this.kinds.get(kind)!.set(key, JSON.parse(JSON.stringify(value)));
  }
  delete(kind: string, key: string): void {
    this.kinds.get(kind)?.delete(key);
  }
  assertMatches(store: MetaStore): void {
    for (const [kind, m] of this.kinds) {
      assert.deepEqual(store.all(kind), m, `kind ${kind}`);
      for (const [key, value] of m) assert.deepEqual(store.get(kind, key), value, `${kind}/${key}`);
    }
  }
}

/** A small deterministic PRNG, so a failing sequence can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

const KINDS = ['vhost', 'exchange', 'queue', 'binding', 'user', 'permission', 'policy', 'offset'];

for (const subject of subjects) {
  const reopenNote = subject.durable ? '' : ' (memory: reopen skipped, state compared on the same instance)';

  describe(`MetaStore contract: ${subject.name}`, () => {
    const dirs: string[] = [];
    const stores: MetaStore[] = [];
    const fresh = (): string => {
      const d = mkdtempSync(join(tmpdir(), 'sluice-meta-contract-'));
      dirs.push(d);
      return d;
    };
    const track = (s: MetaStore): MetaStore => {
      stores.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.close();
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    });

    test('put, get, delete and all', async () => {
      const store = track(await subject.open(fresh()));
      assert.equal(store.get('queue', 'q1'), undefined);
      assert.deepEqual(store.all('queue'), new Map());

      const p = store.put('queue', 'q1', { durable: true, args: { 'x-max-length': 10 } });
      // Visible before the promise resolves.
      assert.deepEqual(store.get('queue', 'q1'), { durable: true, args: { 'x-max-length': 10 } });
      await p;
      await store.put('queue', 'q2', { durable: false });
      await store.put('exchange', '', { type: 'direct' }); // the default exchange's name is ""
      await store.put('queue', 'q1', { durable: false }); // overwrite
      assert.deepEqual(store.get('queue', 'q1'), { durable: false });
      assert.deepEqual([...store.all('queue').keys()], ['q1', 'q2']);
      assert.deepEqual(store.get('exchange', ''), { type: 'direct' });

      await store.delete('queue', 'q1');
      assert.equal(store.get('queue', 'q1'), undefined);
      assert.deepEqual(store.all('queue'), new Map([['q2', { durable: false }]]));
      await store.delete('queue', 'q1'); // missing: a no-op that resolves
      await store.delete('no-such-kind', 'x');

      // all() is a copy: changing it changes nothing.
      const copy = store.all('queue');
      copy.delete('q2');
      assert.ok(store.get('queue', 'q2'));
    });

    test('values are stored as their JSON round trip and handed back frozen', async () => {
      const store = track(await subject.open(fresh()));
      const value = { name: 'p', at: new Date(0), gone: undefined, list: [1, { deep: true }] };
      await store.put('policy', 'p', value);
      value.name = 'changed after put';
      const got = store.get<Record<string, unknown>>('policy', 'p')!;
      assert.deepEqual(got, { name: 'p', at: '1970-01-01T00:00:00.000Z', list: [1, { deep: true }] });
      assert.ok(Object.isFrozen(got));
      assert.ok(Object.isFrozen((got.list as unknown[])[1]));
      assert.throws(() => {
        (got as { name: string }).name = 'x';
      }, TypeError);
    });

    test('bad arguments reject and change nothing', async () => {
      const store = track(await subject.open(fresh()));
      await assert.rejects(store.put('queue', 'q', undefined), TypeError);
      await assert.rejects(store.put('queue', 'q', () => 1), TypeError);
      await assert.rejects(store.put('queue', 'q', { n: 1n }), TypeError);
      await assert.rejects(store.put('', 'q', {}), TypeError);
      await assert.rejects(store.delete('queue', 7 as unknown as string), TypeError);
      assert.deepEqual(store.all('queue'), new Map());
      assert.equal(store.stats().records, 0);
    });

    test('many concurrent puts all resolve, in call order, coalesced into few rounds', async () => {
      const store = track(await subject.open(fresh()));
      const n = 2000;
      const order: number[] = [];
      const all: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        all.push(store.put('offset', `g/t/${i % 64}`, { offset: i }).then(() => void order.push(i)));
      }
      // A no-op delete issued last must not resolve before the puts ahead of it.
      all.push(store.delete('offset', 'missing').then(() => void order.push(n)));
      await Promise.all(all);
      assert.deepEqual(order, [...Array(n + 1).keys()]);
      // The last put to each key wins.
      for (let i = n - 64; i < n; i++) assert.deepEqual(store.get('offset', `g/t/${i % 64}`), { offset: i });
      const stats = store.stats();
      assert.equal(stats.records, n);
      if (subject.durable) {
        assert.ok(stats.rounds >= 1);
        assert.ok(stats.rounds <= n / 20, `${stats.rounds} rounds for ${n} puts`);
      }
    });

    test(`write, close, reopen, compare state${reopenNote}`, async () => {
      const dir = fresh();
      let store = await subject.open(dir);
      const model = new Model();
      const rand = rng(1);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 600; i++) {
        const kind = KINDS[Math.floor(rand() * KINDS.length)]!;
        const key = `k${Math.floor(rand() * 40)}`;
        if (rand() < 0.25) {
          model.delete(kind, key);
          pending.push(store.delete(kind, key));
        } else {
          const value = { i, kind, key, tags: [i % 3, i % 5], nested: { ok: i % 2 === 0 } };
          model.put(kind, key, value);
          pending.push(store.put(kind, key, value));
        }
        if (i % 50 === 0) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      model.assertMatches(store);
      store = track(await subject.reopen(store, dir));
      model.assertMatches(store);
    });

    test(`close waits for changes not yet durable${reopenNote}`, async () => {
      const dir = fresh();
      let store = await subject.open(dir);
      const p = store.put('vhost', '/', { tracing: false });
      await store.close();
      await p;
      await assert.rejects(store.put('vhost', 'x', {}), (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_STORAGE_CLOSED');
      await assert.rejects(store.delete('vhost', '/'), (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_STORAGE_CLOSED');
      await store.close(); // idempotent
      store = track(subject.durable ? await subject.open(dir) : store);
      assert.deepEqual(store.get('vhost', '/'), { tracing: false });
    });

    test(`compaction with a small compactAfter, then reopen and compare state${reopenNote}`, async () => {
      const dir = fresh();
      const compactAfter = 40;
      let store = await subject.open(dir, compactAfter);
      const model = new Model();
      const rand = rng(7);
      const step = async (i: number, concurrent: Promise<void>[]): Promise<void> => {
        const kind = KINDS[Math.floor(rand() * 3)]!;
        const key = `k${Math.floor(rand() * 30)}`;
        if (rand() < 0.3) {
          model.delete(kind, key);
          concurrent.push(store.delete(kind, key));
        } else {
          model.put(kind, key, { i });
          concurrent.push(store.put(kind, key, { i }));
        }
        // Bursts of concurrent changes, so some are queued while a compaction runs.
        if (concurrent.length >= 1 + (i % 17)) await Promise.all(concurrent.splice(0));
      };
      const concurrent: Promise<void>[] = [];
      for (let i = 0; i < 800; i++) await step(i, concurrent);
      await Promise.all(concurrent);
      model.assertMatches(store);
      if (subject.durable) assert.ok(store.stats().compactions >= 3, `${store.stats().compactions} compactions`);

      store = await subject.reopen(store, dir, compactAfter);
      model.assertMatches(store);
      // Sequence numbers carry on after a compaction and a reopen.
      for (let i = 800; i < 900; i++) await step(i, concurrent);
      await Promise.all(concurrent);
      store = track(await subject.reopen(store, dir, compactAfter));
      model.assertMatches(store);
    });

    test(`unicode and nested values${reopenNote}`, async () => {
      const dir = fresh();
      let store = await subject.open(dir);
      const values: Record<string, unknown> = {
        'ünïcödé/κλειδί/鍵/🔑': { name: 'ñandú 🐦', emoji: '👩‍👩‍👧', rtl: 'שלום', nul: 'a\u0000b', lone: 'x\u2028y' },
        deep: { a: { b: { c: { d: { e: [1, [2, [3, [4, { f: null }]]]] } } } } },
        numbers: { big: Number.MAX_SAFE_INTEGER, neg: -1.5e-300, zero: 0, list: [] },
        plain: 'a string is a JSON value too',
        array: [true, false, null, 'ß'],
        empty: {},
      };
      for (const [k, v] of Object.entries(values)) await store.put('policy', k, v);
      const check = (s: MetaStore): void => {
        for (const [k, v] of Object.entries(values)) assert.deepEqual(s.get('policy', k), v, k);
        assert.deepEqual([...s.all('policy').keys()], Object.keys(values));
      };
      check(store);
      store = track(await subject.reopen(store, dir));
      check(store);
    });
  });
}

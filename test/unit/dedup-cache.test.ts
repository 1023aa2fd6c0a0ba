// DedupCache on a real Storage: duplicates, TTL, size eviction, forget, and that the state
// comes back the same after a clean stop and after a crash (abandon) once flushed, while the
// log stays bounded under churn (whole segments reclaimed from the head).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { DedupCache, type DedupCacheOptions } from '../../src/broker/dedup/dedup-cache.js';
import { dedupKey, dedupTtl } from '../../src/broker/dedup/dedup-key.js';
import { Storage } from '../../src/storage/mod.js';
import { TempDirs, rng, tick } from '../contract/storage-helpers.js';

const tmp = new TempDirs('dedup-cache');
afterEach(() => tmp.cleanup());

const LOG = 'dedup/%2F/x';

interface Handle {
  dir: string;
  storage: Storage;
  cache: DedupCache;
}

async function open(opts: DedupCacheOptions, dir = tmp.fresh(), now = 1_000): Promise<Handle> {
  const { storage } = await Storage.open(dir);
  const cache = await DedupCache.open(storage, LOG, opts, now);
  return { dir, storage, cache };
}

async function reopen(h: Handle, how: 'clean' | 'abandon', opts: DedupCacheOptions, now = 1_000): Promise<Handle> {
  if (how === 'clean') {
    await h.cache.close();
    await h.storage.close();
  } else {
    await h.storage.abandon();
    await h.cache.close();
  }
  return open(opts, h.dir, now);
}

async function close(h: Handle): Promise<void> {
  await h.cache.close();
  await h.storage.close();
}

/** Lets compaction's flush and segment removal run. */
async function settle(h: Handle): Promise<void> {
  await h.storage.committer.flushed();
  await tick();
  await h.cache.idle();
}

test('a key seen again is a duplicate; other keys are not', async () => {
  const h = await open({ size: 100, ttlMs: null });
  assert.equal(h.cache.seen('a', 1000), false);
  assert.equal(h.cache.seen('a', 1001), true);
  assert.equal(h.cache.seen('b', 1002), false);
  assert.equal(h.cache.seen('a', 99_999_999), true, 'no TTL: remembered until evicted');
  assert.equal(h.cache.seen('', 1003), false, 'the empty key is a key');
  assert.equal(h.cache.seen('', 1004), true);
  assert.equal(h.cache.seen('ключ 😀', 1005), false);
  assert.equal(h.cache.seen('ключ 😀', 1006), true);
  assert.equal(h.cache.size, 4);
  await close(h);
});

test('TTL: a key is a duplicate until it expires; a duplicate does not extend it; per-call TTL overrides', async () => {
  const h = await open({ size: 100, ttlMs: 100 });
  assert.equal(h.cache.seen('a', 1000), false);
  assert.equal(h.cache.seen('a', 1050), true);
  assert.equal(h.cache.seen('a', 1099), true);
  assert.equal(h.cache.seen('a', 1100), false, 'expired at 1000 + 100, recorded again');
  assert.equal(h.cache.seen('a', 1150), true);
  assert.equal(h.cache.has('a', 1199), true);
  assert.equal(h.cache.has('a', 1200), false);
  assert.equal(h.cache.seen('b', 1000, 5000), false);
  assert.equal(h.cache.seen('b', 5999), true);
  assert.equal(h.cache.seen('b', 6000), false);
  assert.equal(h.cache.seen('c', 1000, null), false);
  assert.equal(h.cache.seen('c', 1e12), true, 'null TTL: never expires');
  await close(h);
});

test('size: beyond it the oldest inserted key is evicted', async () => {
  const h = await open({ size: 3, ttlMs: null });
  for (const k of ['a', 'b', 'c']) assert.equal(h.cache.seen(k, 1000), false);
  assert.equal(h.cache.seen('a', 1001), true, 'a duplicate does not move a key');
  assert.equal(h.cache.seen('d', 1002), false);
  assert.equal(h.cache.size, 3);
  assert.equal(h.cache.has('a', 1003), false, 'a was the oldest inserted');
  assert.deepEqual(['b', 'c', 'd'].map((k) => h.cache.has(k, 1003)), [true, true, true]);
  await close(h);
});

test('forget removes a key, persistently', async () => {
  const opts = { size: 10, ttlMs: null };
  let h = await open(opts);
  h.cache.seen('a', 1000);
  h.cache.seen('b', 1000);
  h.cache.forget('a');
  h.cache.forget('never-seen');
  assert.equal(h.cache.has('a', 1000), false);
  assert.equal(h.cache.size, 1);
  h = await reopen(h, 'clean', opts);
  assert.equal(h.cache.has('a', 1000), false);
  assert.equal(h.cache.has('b', 1000), true);
  assert.equal(h.cache.seen('a', 1001), false);
  await close(h);
});

test('close and reopen: the same keys, TTLs and eviction order', async () => {
  const opts = { size: 4, ttlMs: 1000 };
  let h = await open(opts);
  h.cache.seen('old', 1000, null);
  h.cache.seen('a', 1000);
  h.cache.seen('b', 1500);
  h.cache.seen('c', 1600, 10);
  h = await reopen(h, 'clean', opts, 1700);
  assert.equal(h.cache.size, 4, 'the expired c is kept until evicted, but is no duplicate');
  assert.equal(h.cache.seen('old', 1700), true);
  assert.equal(h.cache.seen('a', 1700), true);
  assert.equal(h.cache.seen('c', 1700), false, 'c expired at 1610');
  // Order after replay: old, a, b, c(new). One more key evicts the oldest, 'old'.
  h.cache.seen('d', 1700);
  assert.equal(h.cache.has('old', 1700), false);
  assert.equal(h.cache.has('a', 1999), true);
  assert.equal(h.cache.has('a', 2000), false, 'its TTL survived the restart');
  await close(h);
});

test('reopen after a crash keeps what was flushed', async () => {
  const opts = { size: 1000, ttlMs: null };
  let h = await open(opts);
  for (let i = 0; i < 500; i++) h.cache.seen(`k${i}`, 1000);
  for (let i = 0; i < 500; i += 5) h.cache.forget(`k${i}`);
  await h.storage.committer.flushed();
  h = await reopen(h, 'abandon', opts);
  assert.equal(h.cache.size, 400);
  for (let i = 0; i < 500; i++) assert.equal(h.cache.has(`k${i}`, 1000), i % 5 !== 0, `k${i}`);
  await close(h);
});

test('churn: 100,000 distinct keys with size 1000 keep the log at a few segments', async () => {
  const opts = { size: 1000, ttlMs: null, segmentBytes: 64 * 1024 };
  let h = await open(opts);
  for (let i = 0; i < 100_000; i++) {
    assert.equal(h.cache.seen(`key-${i}`, 1000 + i), false);
    if (i % 5000 === 4999) await settle(h);
  }
  await settle(h);
  const log = h.storage.getLog(LOG)!;
  // 100k records are ~5 MB; the last 1000 keys fit in one 64 KiB segment.
  assert.ok(log.segmentCount <= 3, `${log.segmentCount} segments`);
  assert.ok(log.sizeBytes <= 3 * 64 * 1024, `${log.sizeBytes} bytes`);
  h = await reopen(h, 'abandon', opts, 200_000);
  assert.equal(h.cache.size, 1000);
  assert.equal(h.cache.has('key-98999', 0), false);
  for (let i = 99_000; i < 100_000; i++) assert.equal(h.cache.has(`key-${i}`, 0), true);
  await close(h);
});

test('churn with a long-lived key: forgotten keys do not pin the log; the live key is rewritten and survives', async () => {
  const opts = { size: 10_000, ttlMs: null, segmentBytes: 16 * 1024 };
  let h = await open(opts);
  h.cache.seen('pinned', 1000);
  for (let i = 0; i < 50_000; i++) {
    h.cache.seen(`m${i}`, 1000);
    h.cache.forget(`m${i}`);
    if (i % 2000 === 1999) await settle(h);
  }
  await settle(h);
  const log = h.storage.getLog(LOG)!;
  assert.ok(log.segmentCount <= 3, `${log.segmentCount} segments`);
  h = await reopen(h, 'abandon', opts);
  assert.equal(h.cache.size, 1);
  assert.equal(h.cache.has('pinned', 1000), true);
  assert.equal(h.cache.has('m49999', 1000), false);
  await close(h);
});

test('expiring keys do not pin the log either', async () => {
  const opts = { size: 100_000, ttlMs: 10, segmentBytes: 16 * 1024 };
  let h = await open(opts);
  h.cache.seen('forever', 0, null);
  for (let i = 0; i < 40_000; i++) {
    h.cache.seen(`t${i % 50}`, i);
    if (i % 2000 === 1999) await settle(h);
  }
  await settle(h);
  assert.ok(h.storage.getLog(LOG)!.segmentCount <= 3, `${h.storage.getLog(LOG)!.segmentCount} segments`);
  h = await reopen(h, 'abandon', opts, 39_955);
  assert.equal(h.cache.has('forever', 39_955), true);
  // t1 was last recorded at 39951 (every 50 operations), to expire at 39961.
  assert.equal(h.cache.has('t1', 39_955), true);
  assert.equal(h.cache.has('t1', 39_961), false);
  await close(h);
});

test('random operations: after a crash the cache equals a model of the same operations', async () => {
  for (const seed of [1, 2, 3]) {
    const rand = rng(seed);
    const opts = { size: 200, ttlMs: 500, segmentBytes: 4 * 1024 };
    let h = await open(opts);
    const model = new Map<string, number>(); // key -> expiresAt (0 = never)
    const live = (k: string, now: number): boolean => {
      const e = model.get(k);
      return e !== undefined && (e === 0 || e > now);
    };
    let now = 1000;
    for (let i = 0; i < 20_000; i++) {
      now += Math.floor(rand() * 3);
      const k = `k${Math.floor(rand() * 400)}`;
      if (rand() < 0.25) {
        h.cache.forget(k);
        model.delete(k);
        continue;
      }
      const ttl = rand() < 0.1 ? null : rand() < 0.5 ? undefined : Math.floor(rand() * 2000);
      const dup = live(k, now);
      assert.equal(h.cache.seen(k, now, ttl), dup, `seed ${seed} op ${i}: ${k}`);
      if (!dup) {
        model.delete(k);
        const t = ttl === undefined ? opts.ttlMs : ttl;
        model.set(k, t === null ? 0 : Math.max(1, now + t));
        while (model.size > opts.size) model.delete(model.keys().next().value as string);
      }
      if (i % 1000 === 999) await settle(h);
    }
    await h.storage.committer.flushed();
    h = await reopen(h, 'abandon', opts, now);
    for (let j = 0; j < 400; j++) assert.equal(h.cache.has(`k${j}`, now), live(`k${j}`, now), `seed ${seed}: k${j} after reopen`);
    assert.ok(h.storage.getLog(LOG)!.sizeBytes < 64 * 1024, `log of ${h.storage.getLog(LOG)!.sizeBytes} bytes for ${opts.size} keys`);
    await close(h);
  }
});

test('delete removes the log; a new cache under the name starts empty', async () => {
  const h = await open({ size: 10, ttlMs: null });
  h.cache.seen('a', 1000);
  await h.cache.close();
  assert.throws(() => h.cache.seen('b', 1000), /closed/);
  assert.equal(await DedupCache.delete(h.storage, LOG), true);
  assert.equal(h.storage.getLog(LOG), undefined);
  const again = await DedupCache.open(h.storage, LOG, { size: 10, ttlMs: null });
  assert.equal(again.size, 0);
  assert.equal(again.seen('a', 1000), false);
  await again.close();
  await h.storage.close();
});

test('dedupKey and dedupTtl read the plugin headers', () => {
  assert.equal(dedupKey(undefined), null);
  assert.equal(dedupKey(null), null);
  assert.equal(dedupKey('k'), 'k');
  assert.equal(dedupKey(42), '42');
  assert.equal(dedupKey(42n), '42');
  assert.equal(dedupKey(true), 'true');
  assert.equal(dedupKey(Buffer.from('bytes')), 'bytes');
  assert.equal(dedupKey({ type: 'S', value: 'typed' }), 'typed');
  assert.equal(dedupKey({ a: 1 }), null);
  assert.equal(dedupKey([1, 2]), null);
  assert.equal(dedupTtl(undefined), undefined);
  assert.equal(dedupTtl(1500), 1500);
  assert.equal(dedupTtl(1500n), 1500);
  assert.equal(dedupTtl('1500'), 1500);
  assert.equal(dedupTtl(0), undefined);
  assert.equal(dedupTtl(-5), undefined);
  assert.equal(dedupTtl(1.5), undefined);
  assert.equal(dedupTtl('soon'), undefined);
});

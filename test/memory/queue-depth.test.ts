// Queue depth must not grow the heap: ready messages live in the log (page cache), and the heap
// holds only per-segment state and a bounded window (DESIGN.md, "Queues").
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Storage, type Durability } from '../../src/storage/mod.js';
import { TempDirs } from '../contract/storage-helpers.js';

const tmp = new TempDirs('queue-depth');
afterEach(() => tmp.cleanup());

const MESSAGES = 10_000_000;
const DURABILITY: Durability = 'none';

function heapAfterGc(): number {
  if (!global.gc) throw new Error('run node with --expose-gc (tools/run-tests.mjs does)');
  global.gc();
  global.gc();
  return process.memoryUsage().heapUsed;
}

test(`a FileQueueStore ('${DURABILITY}') holding ${MESSAGES.toLocaleString('en')} ready messages adds less than 50 MB to the heap`, async () => {
  if (!global.gc) assert.fail('this test needs node --expose-gc');
  const dir = tmp.fresh();
  const { storage } = await Storage.open(dir);
  const { store } = await storage.openQueue('deep', { durability: DURABILITY });
  const before = heapAfterGc();
  const started = Date.now();
  const payload = Buffer.alloc(16);
  let firstRefs: number[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    payload.writeUInt32LE(i, 0);
    // The store keeps the payload in its window while it has room, so each needs its own buffer
    // there; past that, one reused buffer is enough (the log copies it at append).
    const ref = store.enqueue(i < 100_000 ? Buffer.from(payload) : payload, 0);
    if (i < 5) firstRefs.push(ref);
    if ((i & 0xffff) === 0xffff) {
      // Let the commit loop write what is pending, so unwritten slabs stay bounded.
      await storage.committer.settled();
    }
  }
  await store.flushed();
  await storage.committer.settled();
  const enqueueMs = Date.now() - started;
  const after = heapAfterGc();
  const grown = after - before;
  const log = storage.getLog('deep')!;
  console.log(
    `${MESSAGES} enqueued in ${enqueueMs} ms (${Math.round(MESSAGES / (enqueueMs / 1000))}/s); heap ${(before / 1e6).toFixed(1)} MB -> ${(after / 1e6).toFixed(1)} MB (+${(grown / 1e6).toFixed(1)} MB); log ${(log.sizeBytes / 1e6).toFixed(0)} MB in ${log.segmentCount} segments`,
  );
  assert.equal(store.readyCount, MESSAGES);
  assert.ok(grown < 50 * 1024 * 1024, `heap grew by ${(grown / 1e6).toFixed(1)} MB`);
  // The head of the queue comes out first, intact.
  for (let i = 0; i < 5; i++) {
    let m = store.shift();
    if (m === null) {
      await store.fill();
      m = store.shift();
    }
    assert.ok(m, `message ${i}`);
    assert.equal(m.ref, firstRefs[i]);
    assert.equal(m.payload.readUInt32LE(0), i);
    store.ack(m.ref);
  }
  firstRefs = [];
  assert.equal(store.readyCount, MESSAGES - 5);
  await store.close();
  await storage.close();
});

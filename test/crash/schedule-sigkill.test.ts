// The schedule's crashes: a child adding or firing entries is killed with SIGKILL at a random
// moment; after reopening, every acknowledged add is pending and no acknowledged done fires
// again. Then the fixtures: the time index lost or damaged on disk, rebuilt from the log.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../../src/common/mod.js';
import { Storage } from '../../src/storage/storage.js';
import { FileScheduleStore } from '../../src/storage/schedule/file-schedule-store.js';
import { BUCKET_ENTRY, BUCKET_HEADER, encodeBucketEntry } from '../../src/storage/schedule/time-bucket.js';

const dirs: string[] = [];
function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-schedule-crash-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const CHILD = fileURLToPath(new URL('./schedule-child.js', import.meta.url));
const YEAR = 365 * 86_400_000;

/** Runs the child until a random 50-400 ms after it printed "ready", then SIGKILLs it; returns its whole lines. */
function runAndKill(args: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), 50 + Math.floor(Math.random() * 350));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited without being killed: ${err}`));
      resolve(out.slice(0, out.lastIndexOf('\n') + 1).split('\n').filter((l) => l.length > 0));
    });
  });
}

async function openStore(dir: string, clock = new ManualClock(Date.now())) {
  const { storage } = await Storage.open(dir);
  const { store, report } = await FileScheduleStore.open(storage, 'delays', { segmentBytes: 64 * 1024, bucketMs: 60_000, clock });
  return {
    store,
    report,
    async close() {
      await store.close();
      await storage.close();
    },
  };
}

test('SIGKILL while adding, 4 times: every acknowledged entry is pending after reopen', { timeout: 120_000 }, async () => {
  const dir = fresh();
  const acked = new Map<number, { dueAt: number; group: string; payload: string }>();
  for (let run = 0; run < 4; run++) {
    for (const line of await runAndKill(['add', dir, String(run)])) {
      if (!line.startsWith('a ')) continue;
      const [, id, dueAt, group, payload] = line.split(' ');
      acked.set(Number(id), { dueAt: Number(dueAt), group: group!, payload: payload! });
    }
  }
  assert.ok(acked.size > 100, `the children acknowledged only ${acked.size} entries`);
  const s = await openStore(dir);
  try {
    const all = await s.store.browse({ limit: 10_000_000 });
    const byId = new Map(all.map((e) => [e.id, e]));
    for (const [id, want] of acked) {
      const got = byId.get(id);
      assert.ok(got !== undefined, `acknowledged entry ${id} is missing`);
      assert.deepEqual({ dueAt: got.dueAt, group: got.group, payload: got.payload.toString() }, want);
    }
    // Counts agree with what is stored, and the order is the due order.
    assert.equal(s.store.count(), all.length);
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.dueAt < all[i]!.dueAt || (all[i - 1]!.dueAt === all[i]!.dueAt && all[i - 1]!.id < all[i]!.id));
    const counts = new Map<string, number>();
    for (const e of all) counts.set(e.group, (counts.get(e.group) ?? 0) + 1);
    assert.deepEqual(s.store.groupCounts(), counts);
    // And they all fire, far in the future, exactly once.
    const fired = new Set<number>();
    for (;;) {
      const got = await s.store.takeDue(Date.now() + YEAR, 5000);
      if (got.length === 0) break;
      for (const e of got) {
        assert.ok(!fired.has(e.id));
        fired.add(e.id);
        s.store.done(e.id);
      }
    }
    assert.equal(fired.size, all.length);
  } finally {
    await s.close();
  }
});

test('SIGKILL while firing, 5 times: an entry whose done was flushed never fires again, and none is lost', { timeout: 120_000 }, async () => {
  const dir = fresh();
  const SEED = 20_000;
  const doneAcked = new Set<number>();
  for (let run = 0; run < 5; run++) {
    const lines = await runAndKill(['fire', dir, String(SEED)]);
    if (run === 0) assert.ok(lines.includes('seeded'), 'the first child seeds');
    for (const line of lines) if (line.startsWith('d ')) {
      const id = Number(line.slice(2));
      assert.ok(!doneAcked.has(id), `entry ${id} fired again after its done was flushed`);
      doneAcked.add(id);
    }
  }
  assert.ok(doneAcked.size > 0, 'the children fired nothing');
  const s = await openStore(dir);
  try {
    const pending = new Set<number>();
    for (;;) {
      const got = await s.store.takeDue(Date.now() + YEAR, 5000);
      if (got.length === 0) break;
      for (const e of got) {
        assert.ok(!doneAcked.has(e.id), `entry ${e.id} fires again after its done was flushed`);
        pending.add(e.id);
      }
    }
    assert.equal(s.store.count(), pending.size);
    // Nothing lost: every seeded id is pending or was fired. Ids fired but not yet acknowledged
    // when the kill came (at most 3 firers x 50 per run) may be in neither.
    let neither = 0;
    for (let id = 0; id < SEED; id++) if (!pending.has(id) && !doneAcked.has(id)) neither++;
    assert.ok(neither <= 5 * 3 * 50, `${neither} entries neither pending nor acknowledged as fired`);
  } finally {
    await s.close();
  }
});

/** Writes `n` entries over the next three hours (hour buckets), closes, returns what is pending. */
async function writeSome(dir: string, clock: ManualClock, n: number): Promise<Map<number, string>> {
  const s = await openStore(dir, clock);
  const want = new Map<number, string>();
  for (let i = 0; i < n; i++) {
    const id = s.store.add(clock.now() + (i * 7919) % (3 * 3_600_000), `g${i % 3}`, Buffer.from(`v${i}`));
    want.set(id, `v${i}`);
  }
  await s.store.flushed();
  for (const id of [...want.keys()].filter((id) => id % 10 === 0)) {
    s.store.cancel(id);
    want.delete(id);
  }
  await s.close();
  return want;
}

async function assertPending(dir: string, clock: ManualClock, want: Map<number, string>): Promise<FileScheduleStore> {
  const s = await openStore(dir, clock);
  const all = await s.store.browse({ limit: 1_000_000 });
  assert.deepEqual(new Map(all.map((e) => [e.id, e.payload.toString()])), want);
  assert.equal(s.store.count(), want.size);
  await s.close();
  return s.store;
}

function timeDir(dir: string): string {
  const logs = join(dir, 'logs');
  for (const n of readdirSync(logs)) {
    try {
      if (readFileSync(join(logs, n, 'log.json'), 'utf8').includes('schedule:delays')) return join(logs, n, 'time');
    } catch {
      // not a log directory
    }
  }
  throw new Error('no schedule log');
}

test('a lost time index is rebuilt from the log', async () => {
  const dir = fresh();
  const clock = new ManualClock(1_700_000_000_000);
  const want = await writeSome(dir, clock, 3000);
  rmSync(timeDir(dir), { recursive: true });
  const s = await openStore(dir, clock);
  assert.equal(s.report.reindexed, want.size);
  await s.close();
  await assertPending(dir, clock, want);
  // Rebuilt once: the next open finds the index whole.
  const again = await openStore(dir, clock);
  assert.equal(again.report.reindexed, 0);
  await again.close();
});

test('a torn bucket tail, a damaged entry and an entry past the log end are repaired', async () => {
  const dir = fresh();
  const clock = new ManualClock(1_700_000_000_000);
  const want = await writeSome(dir, clock, 3000);
  const tdir = timeDir(dir);
  const buckets = readdirSync(tdir).filter((n) => n.endsWith('.tix')).sort();
  assert.ok(buckets.length >= 3);
  // 1. Torn tail: cut the last entry in half.
  const b0 = join(tdir, buckets[0]!);
  truncateSync(b0, statSync(b0).size - BUCKET_ENTRY / 2);
  // 2. A flipped byte inside an entry of the second bucket.
  const b1 = join(tdir, buckets[1]!);
  const data = readFileSync(b1);
  data[BUCKET_HEADER + 5 * BUCKET_ENTRY + 3]! ^= 0xff;
  writeFileSync(b1, data);
  // 3. An entry naming an id the log never stored (a tail cut after a crash): it must not
  //    shadow the entry that later gets that id.
  const ghost = Buffer.alloc(BUCKET_ENTRY);
  const start = Number(buckets[2]!.slice(0, 20));
  encodeBucketEntry(ghost, 0, start + 5, 3000 + 7, 0);
  appendFileSync(join(tdir, buckets[2]!), ghost);

  const s = await openStore(dir, clock);
  assert.equal(s.report.droppedIndexEntries, 2, 'the damaged entry and the ghost');
  assert.ok(s.report.reindexed >= 1 && s.report.reindexed <= 2, `reindexed ${s.report.reindexed}`);
  assert.deepEqual(s.report.repairedBuckets.sort(), [buckets[1], buckets[2]].sort());
  // Id 3007 is taken by a new entry far away; it fires once, at its own time.
  for (let i = 0; i < 8; i++) want.set(s.store.add(clock.now() + YEAR, 'late', Buffer.from(`late${i}`)), `late${i}`);
  await s.close();
  await assertPending(dir, clock, want);
  const t = await openStore(dir, clock);
  clock.advance(3 * 3_600_000);
  const early = await t.store.takeDue(clock.now(), 100_000);
  assert.ok(!early.some((e) => e.id === 3007), 'the ghost entry never fires');
  await t.close();
});

// The crashes the definitions store must survive, built by hand on disk, then the real thing:
// a child process killed with SIGKILL while writing, with every acknowledged change checked.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CorruptSegment } from '../../src/common/mod.js';
import { RecordType, encodeRecord, recordSize } from '../../src/storage/log/record.js';
import { DEFS_LOG, DEFS_SNAPSHOT, DEFS_SNAPSHOT_TMP, FileMetaStore } from '../../src/storage/meta/file-meta-store.js';
import type { RecoveryReport } from '../../src/storage/meta/meta-store.js';

const dirs: string[] = [];
function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-meta-crash-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** One framed record, as FileMetaStore writes it. */
function record(offset: number, body: object): Buffer {
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const buf = Buffer.alloc(recordSize(payload.length));
  encodeRecord(buf, 0, offset, 1_700_000_000_000, RecordType.DATA, 0, payload);
  return buf;
}
const put = (seq: number, key: string, value: unknown): Buffer => record(seq, { op: 'put', kind: 'queue', key, value });
const del = (seq: number, key: string): Buffer => record(seq, { op: 'delete', kind: 'queue', key });

/** A snapshot file covering `seq`: one record per entry, then the commit record. */
function snapshot(seq: number, entries: Record<string, unknown>): Buffer {
  const recs = Object.entries(entries).map(([key, value], i) => record(i, { op: 'put', kind: 'queue', key, value }));
  recs.push(record(recs.length, { op: 'commit', v: 1, seq, count: recs.length }));
  return Buffer.concat(recs);
}

/** Five puts q1..q5 with seq 1..5. */
function fiveRecords(): Buffer[] {
  return [1, 2, 3, 4, 5].map((i) => put(i, `q${i}`, { n: i }));
}

async function openAndClose(dir: string): Promise<{ state: Map<string, unknown>; report: RecoveryReport }> {
  const { store, report } = await FileMetaStore.open(dir);
  const state = store.all('queue');
  await store.close();
  return { state, report };
}

function queues(n: number): Map<string, unknown> {
  return new Map([...Array(n).keys()].map((i) => [`q${i + 1}`, { n: i + 1 }]));
}

const CLEAN: RecoveryReport = { truncatedBytes: 0, droppedRecords: 0, removed: [] };

test('a truncated tail: the half-written last record is cut off and reported', async () => {
  const dir = fresh();
  const recs = fiveRecords();
  const whole = Buffer.concat(recs);
  const half = Math.floor(recs[4]!.length / 2);
  writeFileSync(join(dir, DEFS_LOG), whole.subarray(0, whole.length - recs[4]!.length + half));

  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(4));
  const goodBytes = whole.length - recs[4]!.length;
  assert.deepEqual(report, {
    truncatedBytes: half,
    droppedRecords: 1,
    reason: 'truncated record',
    path: join(dir, DEFS_LOG),
    position: goodBytes,
    removed: [],
  });
  assert.equal(statSync(join(dir, DEFS_LOG)).size, goodBytes);

  // New records go after the cut, and the next open is clean.
  const { store } = await FileMetaStore.open(dir);
  await store.put('queue', 'q6', { n: 6 });
  await store.close();
  const again = await openAndClose(dir);
  assert.deepEqual(again.report, CLEAN);
  assert.deepEqual(again.state, new Map([...queues(4), ['q6', { n: 6 }]]));
});

test('a garbage tail: random bytes after the last record are cut off and reported', async () => {
  const dir = fresh();
  const whole = Buffer.concat(fiveRecords());
  const garbage = randomBytes(300);
  garbage[0] = 0xff; // a nonzero length, so it is garbage and not an unwritten tail
  writeFileSync(join(dir, DEFS_LOG), Buffer.concat([whole, garbage]));

  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(5));
  assert.equal(report.truncatedBytes, garbage.length);
  assert.ok(report.droppedRecords >= 1);
  assert.ok(['bad length', 'truncated record', 'bad magic', 'bad crc'].includes(report.reason!), report.reason);
  assert.equal(report.position, whole.length);
  assert.equal(statSync(join(dir, DEFS_LOG)).size, whole.length);
});

test('a zero-filled tail (space allocated, never written) is cut without dropping records', async () => {
  const dir = fresh();
  const whole = Buffer.concat(fiveRecords());
  writeFileSync(join(dir, DEFS_LOG), Buffer.concat([whole, Buffer.alloc(4096)]));
  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(5));
  assert.deepEqual(report, {
    truncatedBytes: 4096,
    droppedRecords: 0,
    reason: 'zero length',
    path: join(dir, DEFS_LOG),
    position: whole.length,
    removed: [],
  });
});

test('a flipped CRC byte mid-log: that record and everything after it are dropped', async () => {
  const dir = fresh();
  const recs = [...fiveRecords(), del(6, 'q1'), put(7, 'q8', { n: 8 })];
  const bad = 2; // the third record, q3
  const position = recs[0]!.length + recs[1]!.length;
  const file = Buffer.concat(recs);
  file[position + 5] ^= 0x01; // inside the crc field
  writeFileSync(join(dir, DEFS_LOG), file);

  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(2));
  assert.deepEqual(report, {
    truncatedBytes: file.length - position,
    droppedRecords: recs.length - bad,
    reason: 'bad crc',
    path: join(dir, DEFS_LOG),
    position,
    removed: [],
  });
});

test('a leftover defs.snapshot.tmp is ignored and removed', async () => {
  const dir = fresh();
  writeFileSync(join(dir, DEFS_SNAPSHOT), snapshot(5, { q1: { n: 1 }, q2: { n: 2 } }));
  writeFileSync(join(dir, DEFS_LOG), Buffer.concat([put(6, 'q3', { n: 3 })]));
  // An interrupted compaction: half a snapshot that claims to know better.
  const tmp = snapshot(99, { q1: { n: 'wrong' }, z: {} });
  writeFileSync(join(dir, DEFS_SNAPSHOT_TMP), tmp.subarray(0, tmp.length - 10));

  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(3));
  assert.deepEqual(report, { ...CLEAN, removed: [join(dir, DEFS_SNAPSHOT_TMP)] });
  assert.equal(existsSync(join(dir, DEFS_SNAPSHOT_TMP)), false);
});

test('log records a snapshot already covers are skipped, even when they would undo it', async () => {
  const dir = fresh();
  // A crash while the log was being emptied after a snapshot at seq 3: the old log is still
  // there, cut mid-record. Replaying seq 1 would put q1 back to its old value.
  writeFileSync(join(dir, DEFS_SNAPSHOT), snapshot(3, { q1: { n: 'new' } }));
  const old = Buffer.concat([put(1, 'q1', { n: 'old' }), put(2, 'q2', { n: 2 })]);
  writeFileSync(join(dir, DEFS_LOG), old.subarray(0, old.length - 7));

  const { store, report } = await FileMetaStore.open(dir);
  assert.deepEqual(store.all('queue'), new Map([['q1', { n: 'new' }]]));
  assert.equal(report.reason, 'truncated record');
  assert.equal(report.droppedRecords, 1);
  // New changes get seq > 3, so they are replayed after the snapshot.
  await store.put('queue', 'q4', { n: 4 });
  await store.delete('queue', 'q1');
  await store.close();
  const again = await openAndClose(dir);
  assert.deepEqual(again.state, new Map([['q4', { n: 4 }]]));
  assert.deepEqual(again.report, CLEAN);
});

test('a sequence number going backwards ends the valid log', async () => {
  const dir = fresh();
  const recs = [put(1, 'q1', { n: 1 }), put(2, 'q2', { n: 2 }), put(2, 'q3', { n: 3 }), put(3, 'q4', { n: 4 })];
  writeFileSync(join(dir, DEFS_LOG), Buffer.concat(recs));
  const { state, report } = await openAndClose(dir);
  assert.deepEqual(state, queues(2));
  assert.equal(report.droppedRecords, 2);
  assert.match(report.reason!, /sequence went back/);
});

test('a corrupt snapshot is an error, not a silent loss', async () => {
  const cases: Array<[string, (s: Buffer) => Buffer]> = [
    ['a flipped byte', (s) => {
      const c = Buffer.from(s);
      c[40] ^= 0x10;
      return c;
    }],
    ['no commit record', (s) => s.subarray(0, s.length - record(2, { op: 'commit', v: 1, seq: 9, count: 2 }).length)],
    ['cut mid-record', (s) => s.subarray(0, s.length - 3)],
    ['bytes after the commit', (s) => Buffer.concat([s, put(0, 'x', {})])],
    ['empty', () => Buffer.alloc(0)],
  ];
  for (const [what, damage] of cases) {
    const dir = fresh();
    writeFileSync(join(dir, DEFS_SNAPSHOT), damage(snapshot(9, { q1: { n: 1 }, q2: { n: 2 } })));
    await assert.rejects(FileMetaStore.open(dir), (e: unknown) => {
      assert.ok(e instanceof CorruptSegment, what);
      assert.equal(e.code, 'SLUICE_STORAGE_CORRUPT_SEGMENT');
      assert.equal(e.path, join(dir, DEFS_SNAPSHOT));
      return true;
    }, what);
  }
});

test('a store written by FileMetaStore itself is readable as hand-built records', async () => {
  // Guards the fixtures above: they must match the format the store really writes.
  const dir = fresh();
  const { store } = await FileMetaStore.open(dir);
  for (let i = 1; i <= 5; i++) await store.put('queue', `q${i}`, { n: i });
  await store.close();
  const disk = readFileSync(join(dir, DEFS_LOG));
  const hand = Buffer.concat(fiveRecords());
  // Identical but for the timestamps (bytes 20..28 of each header) and so the CRCs.
  assert.equal(disk.length, hand.length);
  let pos = 0;
  for (const r of fiveRecords()) {
    assert.deepEqual(disk.subarray(pos + 8, pos + 20), r.subarray(8, 20));
    assert.deepEqual(disk.subarray(pos + 28, pos + r.length), r.subarray(28));
    pos += r.length;
  }
});

const CHILD = fileURLToPath(new URL('./meta-child.js', import.meta.url));

interface ChildRun {
  acked: Map<string, unknown>;
  deleted: Set<string>;
  signal: NodeJS.Signals | null;
}

/** Runs the writer child until a random 50-300 ms after it is ready, then SIGKILLs it. */
function runAndKill(dir: string, run: number, compactAfter: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(run), String(compactAfter)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (timer === undefined && (out + chunk).startsWith('ready\n')) {
        timer = setTimeout(() => child.kill('SIGKILL'), 50 + Math.floor(Math.random() * 250));
      }
      out += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited without being killed: ${err}`));
      const acked = new Map<string, unknown>();
      const deleted = new Set<string>();
      // Only whole lines: a change is acknowledged once its line is complete.
      for (const line of out.slice(0, out.lastIndexOf('\n') + 1).split('\n')) {
        if (line.startsWith('put ')) {
          const [, key, json] = /^put (\S+) (.*)$/.exec(line)!;
          acked.set(key!, JSON.parse(json!));
        } else if (line.startsWith('del ')) {
          deleted.add(line.slice(4));
        }
      }
      resolve({ acked, deleted, signal });
    });
  });
}

test('SIGKILL while writing with fsync, 5 times: every acknowledged change survives', async () => {
  const dir = fresh();
  const acked = new Map<string, unknown>();
  const deleted = new Set<string>();
  for (let run = 0; run < 5; run++) {
    // A small compactAfter so kills also land inside compactions.
    const r = await runAndKill(dir, run, 64);
    for (const [k, v] of r.acked) acked.set(k, v);
    for (const k of r.deleted) deleted.add(k);
  }
  assert.ok(acked.size > 0, 'the children acknowledged nothing');

  const { store, report } = await FileMetaStore.open(dir);
  try {
    for (const [key, value] of acked) {
      const got = store.get('queue', key);
      if (deleted.has(key)) assert.equal(got, undefined, `${key} was deleted and acknowledged`);
      // The child deletes every third key after its put: an unacknowledged delete may or may not have landed.
      else if ((value as { i: number }).i % 3 === 0 && got === undefined) continue;
      else assert.deepEqual(got, value, `${key} was acknowledged`);
    }
    // Whatever recovery cut, it was never an acknowledged record.
    assert.ok(report.truncatedBytes >= 0);
  } finally {
    await store.close();
  }
});

// The requeue-count sidecar of a queue: what survives a reopen, what an ack forgets, a torn
// tail, and the rewrite that keeps the file from growing with stale records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RequeueCounts } from '../../src/storage/queue-store/requeue-counts.js';

const all = (): boolean => true;

test('RequeueCounts: counts survive a reopen; forgotten, zeroed and no-longer-live refs do not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-requeues-'));
  try {
    const a = new RequeueCounts(dir, all);
    assert.equal(a.get(7), 0);
    a.set(7, 1);
    a.set(7, 2);
    a.set(9, 1);
    a.set(11, 3);
    a.set(11, 0); // zero forgets
    a.set(13, 1);
    a.forget(13); // acked: memory only
    assert.deepEqual([a.get(7), a.get(9), a.get(11), a.get(13)], [2, 1, 0, 0]);
    a.close();
    // 13's record is still in the file; the reader is told it is no longer live.
    const b = new RequeueCounts(dir, (ref) => ref !== 13 && ref !== 9);
    assert.deepEqual([b.get(7), b.get(9), b.get(11), b.get(13)], [2, 0, 0, 0]);
    assert.equal(b.size, 1);
    b.close();
    // A torn last record (a crash mid-write) is ignored; what came before stays.
    appendFileSync(join(dir, 'requeues'), Buffer.from([1, 2, 3, 4, 5]));
    const c = new RequeueCounts(dir, all);
    assert.equal(c.get(7), 2);
    c.set(7, 3);
    c.close();
    assert.equal(new RequeueCounts(dir, all).get(7), 3, 'appends after the torn tail are read back');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RequeueCounts: many requeues of a few messages do not grow the file without bound', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-requeues-'));
  try {
    const r = new RequeueCounts(dir, all);
    for (let i = 1; i <= 50_000; i++) r.set(i % 10, i);
    r.close();
    assert.ok(statSync(join(dir, 'requeues')).size <= 16 * 4096 * 2, `file ${statSync(join(dir, 'requeues')).size} bytes`);
    const again = new RequeueCounts(dir, all);
    for (let k = 0; k < 10; k++) assert.equal(again.get(k), 50_000 - ((50_000 - k) % 10));
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RequeueCounts: a deleted directory or a closed queue never makes a requeue fail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-requeues-'));
  const r = new RequeueCounts(dir, all);
  r.set(1, 1);
  r.close(); // closes the file: the next append must open the path again
  rmSync(dir, { recursive: true, force: true });
  assert.doesNotThrow(() => r.set(1, 2), 'after close: memory only');
  assert.equal(r.get(1), 2);
  const dir2 = mkdtempSync(join(tmpdir(), 'sluice-requeues-'));
  const s = new RequeueCounts(dir2, all);
  rmSync(dir2, { recursive: true, force: true }); // the queue's directory went away (deleted queue)
  assert.doesNotThrow(() => s.set(5, 1));
  assert.doesNotThrow(() => s.set(5, 2));
  assert.equal(s.get(5), 2);
  s.close();
});

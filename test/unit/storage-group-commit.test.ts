// The one commit loop: batching comes from load, 'os' logs never sync the journal, a round
// that fails never confirms anything that was waiting on it, and held records (tickets) keep
// exactly the flushed() calls made after them waiting.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Storage, type GroupCommitter } from '../../src/storage/mod.js';
import { TempDirs, payloadFor, tick } from '../contract/storage-helpers.js';

const tmp = new TempDirs('group-commit');
afterEach(() => tmp.cleanup());

test('concurrent appenders share rounds: far fewer journal syncs than confirmed records', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const log = await storage.openLog('l', { durability: 'fsync' });
  const before = { ...storage.committer.stats };
  let n = 0;
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      for (let k = 0; k < 10; k++) {
        log.append(payloadFor(n++));
        await log.flushed();
      }
    }),
  );
  const rounds = storage.committer.stats.rounds - before.rounds;
  const syncs = storage.committer.stats.journalSyncs - before.journalSyncs;
  assert.equal(log.nextOffset, 2000);
  assert.ok(rounds <= 100, `${rounds} rounds for 2000 confirms from 200 appenders`);
  assert.ok(syncs <= rounds);
  await storage.close();
});

test("'os' and 'none' logs are written without a journal sync", async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const a = await storage.openLog('a', { durability: 'os' });
  const b = await storage.openLog('b', { durability: 'none' });
  const before = storage.committer.stats.journalSyncs;
  for (let i = 0; i < 100; i++) {
    a.append(payloadFor(i));
    b.append(payloadFor(i));
    if (i % 10 === 0) await a.flushed();
  }
  await a.flushed();
  await storage.committer.settled();
  assert.equal(storage.committer.stats.journalSyncs, before);
  assert.equal(a.writtenOffset, 100);
  assert.equal(b.writtenOffset, 100);
  await storage.close();
});

for (const durability of ['fsync', 'os'] as const) {
  test(`flushed() asked while a failing round is in flight rejects instead of confirming (${durability})`, async () => {
    const dir = tmp.fresh();
    const { storage } = await Storage.open(dir);
    const log = await storage.openLog('l', { durability, segmentBytes: 1024 });
    log.append(Buffer.alloc(900));
    await log.flushed();
    // The next record needs a new segment file, and its directory is gone: the round fails.
    rmSync(log.dir, { recursive: true });
    log.append(Buffer.alloc(900));
    assert.equal(log.segmentCount, 2);
    while (storage.committer.pendingParticipants > 0) await tick();
    // The round is in flight now, with nothing else pending.
    await assert.rejects(log.flushed(), /ENOENT/);
    await assert.rejects(log.flushed(), /ENOENT/, 'and later calls keep failing');
    await storage.abandon();
  });
}

/** A participant that holds records back with the given tickets until told to let them go. */
function holder(committer: GroupCommitter): { hold(): number; release(): void; rounds: number } {
  const held: number[] = [];
  const p = {
    rounds: 0,
    beginRound: () => {
      p.rounds++;
      return false;
    },
    endRound: () => undefined,
    heldTicket: () => held[0] ?? Infinity,
    hold(): number {
      const t = committer.ticket();
      held.push(t);
      committer.markDirty(p);
      return t;
    },
    release(): void {
      held.length = 0;
      committer.markDirty(p);
    },
  };
  return p;
}

// Waiting a short while shows only that something has NOT happened yet (a slow machine cannot
// make a held promise settle); that something does happen is waited for with a long deadline.
const settledWithin = async (p: Promise<void>, ms: number): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setTimeout(r, ms));
  return done;
};
const settles = (p: Promise<void>): Promise<boolean> => settledWithin(p, 0).then((d) => d || eventually(p));
const eventually = async (p: Promise<void>): Promise<boolean> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 20_000)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
};
const until = async (cond: () => boolean): Promise<void> => {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in 20 s');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('flushed() waits for records held before the call, and only for those', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const c = storage.committer;
  const h = holder(c);
  const before = c.flushed(); // nothing held yet
  assert.equal(await settles(before), true, 'a call before any hold resolves');
  h.hold();
  const after = c.flushed();
  await until(() => h.rounds >= 1);
  assert.equal(await settledWithin(after, 30), false, 'a call after a hold waits for it, round after round');
  assert.equal(c.holders, 1);
  h.release();
  assert.equal(await settles(after), true, 'and resolves once the record is let go');
  assert.equal(c.holders, 0);
  await storage.close();
});

test('a record held after a flushed() call does not delay that call, even before the next round starts', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const c = storage.committer;
  const log = await storage.openLog('l', { durability: 'fsync' });
  const h = holder(c);
  log.append(payloadFor(1));
  const mine = log.flushed(); // covers record 1 only
  h.hold(); // appended after the call, in the same tick: same round
  assert.equal(await settles(mine), true, 'not held up by the later record (still held)');
  const later = log.flushed();
  assert.equal(await settledWithin(later, 30), false, 'a call after the hold waits');
  h.release();
  await later;
  await storage.close();
});

test('flushed() while a round is in flight and nothing is dirty still waits for a record that round holds', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const c = storage.committer;
  const log = await storage.openLog('l', { durability: 'fsync' });
  const h = holder(c);
  log.append(payloadFor(1));
  h.hold();
  while (c.pendingParticipants > 0) await tick();
  // The round is in flight; the holder has not reported yet, so only the round's waiter knows.
  const p = c.flushed();
  assert.equal(await settledWithin(p, 30), false);
  h.release();
  await p;
  await storage.close();
});

test('whenFlushed() calls its listener once, after the round that stores what came before it, and with ok=false when that round fails', async () => {
  const dir = tmp.fresh();
  const { storage } = await Storage.open(dir);
  const c = storage.committer;
  const log = await storage.openLog('l', { durability: 'fsync', segmentBytes: 1024 });
  const calls: Array<{ ok: boolean; written: number }> = [];
  const listener = { flushDone: (ok: boolean) => calls.push({ ok, written: log.writtenOffset }) };
  log.append(payloadFor(1));
  c.whenFlushed(listener);
  assert.equal(calls.length, 0, 'not called synchronously');
  await log.flushed();
  assert.deepEqual(calls, [{ ok: true, written: 1 }], 'called once, with the record written');

  // Nothing dirty and no round in flight: still called, asynchronously.
  c.whenFlushed(listener);
  assert.equal(calls.length, 1);
  await tick();
  assert.deepEqual(calls[1], { ok: true, written: 1 });

  // A round that fails (its new segment's directory is gone) reports ok=false.
  rmSync(log.dir, { recursive: true });
  log.append(Buffer.alloc(900));
  c.whenFlushed(listener);
  await assert.rejects(log.flushed(), /ENOENT/);
  assert.equal(calls.length, 3);
  assert.equal(calls[2]!.ok, false);
  await storage.abandon();
});

test('whenFlushed() waits for records held before the call, like flushed()', async () => {
  const { storage } = await Storage.open(tmp.fresh());
  const c = storage.committer;
  const h = holder(c);
  h.hold();
  let called = 0;
  c.whenFlushed({ flushDone: (ok) => (called += ok ? 1 : 100) });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(called, 0, 'held, round after round');
  h.release();
  await until(() => called !== 0);
  assert.equal(called, 1);
  await storage.close();
});

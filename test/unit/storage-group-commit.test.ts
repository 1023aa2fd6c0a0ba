// The one commit loop: batching comes from load, 'os' logs never sync the journal, and a
// round that fails never confirms anything that was waiting on it.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Storage } from '../../src/storage/mod.js';
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

// The crashes the storage engine must survive, built by hand on disk: write the state with the
// engine, stop it, damage the files directly, then open again and check both the recovered
// state and the report of what was dropped or restored.
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, openSync, closeSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync, rmSync } from 'node:fs';
import { Storage, type Durability, type SegmentLog, type StorageRecoveryReport } from '../../src/storage/mod.js';
import { TempDirs, payloadFor, checkPayload, drainCounters, readAll } from '../contract/storage-helpers.js';

const tmp = new TempDirs('storage-crash');
afterEach(() => tmp.cleanup());

/** No timer checkpoint during a fixture: the journal must hold what the test put in it. */
// directSyncMaxLogs 0: these fixtures are about the journal, so every round must use it.
const NO_TIMER = { checkpointIntervalMs: 3_600_000, directSyncMaxLogs: 0 };

const segName = (base: number): string => `${String(base).padStart(20, '0')}.seg`;

async function writeLog(
  dir: string,
  n: number,
  opts: { durability: Durability; segmentBytes?: number },
  stop: 'clean' | 'abandon',
): Promise<{ logDir: string; bases: number[] }> {
  const { storage } = await Storage.open(dir, NO_TIMER);
  const log = await storage.openLog('l', opts);
  for (let i = 0; i < n; i++) {
    log.append(payloadFor(i), 1_700_000_000_000 + i);
    if (i % 10 === 9) await log.flushed();
  }
  await log.flushed();
  const out = { logDir: log.dir, bases: log.segmentBases() };
  if (stop === 'clean') {
    await storage.close();
    // What a crash leaves: no CLEAN marker, so the tail is scanned.
    rmSync(`${dir}/CLEAN`);
  } else await storage.abandon();
  return out;
}

async function reopen(dir: string): Promise<{ storage: Storage; log: SegmentLog; report: StorageRecoveryReport }> {
  const { storage, report } = await Storage.open(dir, NO_TIMER);
  return { storage, log: storage.getLog('l')!, report };
}

async function counters(log: SegmentLog): Promise<number[]> {
  return (await readAll(log)).map((r) => {
    const c = checkPayload(r.payload);
    assert.equal(r.offset, c, 'record at its own offset');
    return c;
  });
}

const range = (from: number, to: number): number[] => [...Array(to - from).keys()].map((i) => i + from);

/** File positions where each record of a segment file starts (walking the length prefixes). */
function recordStarts(path: string): number[] {
  const data = readFileSync(path);
  const out: number[] = [];
  for (let p = 16; p + 4 <= data.length; p += 4 + data.readUInt32LE(p)) out.push(p);
  return out;
}

/** Journal entries of a journal file: where each starts, its log id, byte length and seq. */
function journalEntries(path: string): Array<{ pos: number; logId: number; len: number; seq: number }> {
  const data = readFileSync(path);
  const out = [];
  for (let p = 0; p + 24 <= data.length; ) {
    const len = data.readUInt32LE(p + 12);
    if (p + 24 + len > data.length) break;
    out.push({ pos: p, logId: data.readUInt32LE(p + 8), len, seq: data.readUInt32LE(p + 16) });
    p += 24 + len;
  }
  return out;
}

function journalFiles(dir: string): string[] {
  return readdirSync(`${dir}/journal`)
    .filter((n) => n.endsWith('.jnl'))
    .sort()
    .map((n) => `${dir}/journal/${n}`);
}

describe('storage crash fixtures: segment logs', () => {
  for (const durability of ['fsync', 'os'] as const) {
    test(`a truncated tail (the last segment cut mid-record) is cut back to the last whole record (${durability})`, async () => {
      const dir = tmp.fresh();
      const { logDir, bases } = await writeLog(dir, 100, { durability, segmentBytes: 4096 }, 'clean');
      const last = `${logDir}/${segName(bases[bases.length - 1]!)}`;
      const starts = recordStarts(last);
      const size = statSync(last).size;
      // Cut the last-but-one record in half: it and the last one are lost.
      const cutRecord = starts[starts.length - 2]!;
      const cutAt = cutRecord + 11;
      truncateSync(last, cutAt);
      const { storage, log, report } = await reopen(dir);
      assert.equal(report.clean, false);
      assert.equal(report.logs.length, 1);
      assert.equal(report.logs[0]!.log, 'l');
      assert.equal(report.logs[0]!.truncatedBytes, cutAt - cutRecord);
      assert.equal(report.logs[0]!.replayed, 0, 'the journal was emptied by the clean close');
      assert.match(report.logs[0]!.problems.join(), /torn record/);
      assert.equal(statSync(last).size, cutRecord);
      assert.deepEqual(await counters(log), range(0, 98));
      assert.equal(log.nextOffset, 98);
      assert.ok(size > cutAt);
      // Appends continue at the first lost offset, and the repaired log reopens cleanly.
      log.append(payloadFor(98));
      await log.flushed();
      await storage.close();
      const again = await reopen(dir);
      assert.deepEqual(again.report.logs, []);
      assert.deepEqual(await counters(again.log), range(0, 99));
      await again.storage.close();
    });

    test(`a garbage tail (random bytes after the last record) is cut off (${durability})`, async () => {
      const dir = tmp.fresh();
      const { logDir, bases } = await writeLog(dir, 60, { durability, segmentBytes: 4096 }, 'abandon');
      const last = `${logDir}/${segName(bases[bases.length - 1]!)}`;
      const size = statSync(last).size;
      const garbage = randomBytes(333);
      garbage.writeUInt32LE(200_000_000, 0); // a length that would fit MAX_RECORD_BYTES but not the file
      appendFileSync(last, garbage);
      const { storage, log, report } = await reopen(dir);
      assert.equal(report.logs.length, 1);
      assert.equal(report.logs[0]!.truncatedBytes, 333);
      assert.equal(report.logs[0]!.quarantined.length, 0);
      assert.equal(statSync(last).size, size);
      assert.deepEqual(await counters(log), range(0, 60));
      await storage.close();
    });
  }

  test('random garbage of every kind after the last record never survives recovery', async () => {
    for (let k = 0; k < 8; k++) {
      const dir = tmp.fresh();
      const { logDir, bases } = await writeLog(dir, 30, { durability: 'os' }, 'abandon');
      const last = `${logDir}/${segName(bases[bases.length - 1]!)}`;
      const garbage = randomBytes(1 + k * 97);
      if (k === 0) garbage.fill(0);
      appendFileSync(last, garbage);
      const { storage, log, report } = await reopen(dir);
      assert.equal(report.logs[0]?.truncatedBytes, garbage.length, `garbage ${k}`);
      assert.deepEqual(await counters(log), range(0, 30));
      await storage.close();
    }
  });

  test('a damaged tail is found even when a clean close had vouched for the last segment', async () => {
    const dir = tmp.fresh();
    const { storage: s0 } = await Storage.open(dir, NO_TIMER);
    const log0 = await s0.openLog('l', { durability: 'os' });
    for (let i = 0; i < 40; i++) log0.append(payloadFor(i));
    await log0.flushed();
    const last = `${log0.dir}/${segName(0)}`;
    await s0.close();
    assert.ok(existsSync(`${dir}/CLEAN`));
    const starts = recordStarts(last);
    truncateSync(last, starts[35]! + 3);
    const { storage, log, report } = await reopen(dir);
    assert.equal(report.clean, true);
    assert.equal(report.logs[0]?.truncatedBytes, 3);
    assert.deepEqual(await counters(log), range(0, 35));
    await storage.close();
  });

  for (const where of ['last', 'middle'] as const) {
    test(`a segment with the wrong format version is quarantined with a .corrupt suffix and reported (${where})`, async () => {
      const dir = tmp.fresh();
      const { logDir, bases } = await writeLog(dir, 200, { durability: 'os', segmentBytes: 4096 }, 'clean');
      assert.ok(bases.length >= 4);
      const k = where === 'last' ? bases.length - 1 : 1;
      const victim = `${logDir}/${segName(bases[k]!)}`;
      const fd = openSync(victim, 'r+');
      const v = Buffer.alloc(2);
      v.writeUInt16LE(99);
      writeSync(fd, v, 0, 2, 4);
      closeSync(fd);
      const { storage, log, report } = await reopen(dir);
      assert.equal(report.logs.length, 1);
      assert.deepEqual(report.logs[0]!.quarantined, [`${victim}.corrupt`]);
      assert.match(report.logs[0]!.problems.join(), /unsupported segment version 99/);
      assert.ok(existsSync(`${victim}.corrupt`));
      assert.ok(!existsSync(victim));
      assert.ok(!existsSync(victim.replace('.seg', '.idx')));
      const lost = range(bases[k]!, k + 1 < bases.length ? bases[k + 1]! : 200);
      const got = (await readAll(log)).map((r) => checkPayload(r.payload));
      assert.deepEqual(got, range(0, 200).filter((i) => !lost.includes(i)));
      for (const i of lost) assert.equal(await log.read(i), null);
      if (where === 'last') assert.equal(log.nextOffset, bases[k]);
      else assert.equal(log.nextOffset, 200);
      // New records go on after the last good one.
      const next = log.append(payloadFor(log.nextOffset));
      await log.flushed();
      assert.equal(checkPayload((await log.read(next))!.payload), next);
      await storage.close();
    });
  }
});

describe('storage crash fixtures: the journal', () => {
  test('a journal whose records are missing from the log restores them on replay (report.logs[].replayed)', async () => {
    const dir = tmp.fresh();
    const { logDir, bases } = await writeLog(dir, 150, { durability: 'fsync', segmentBytes: 4096 }, 'abandon');
    const lastBase = bases[bases.length - 1]!;
    const last = `${logDir}/${segName(lastBase)}`;
    // What a power loss can leave: the log's newest pages never reached the disk.
    truncateSync(last, 16);
    const { storage, log, report } = await reopen(dir);
    assert.equal(report.clean, false);
    assert.ok(report.journal.entries > 0);
    assert.equal(report.journal.tornTail, null);
    assert.equal(report.logs.length, 1);
    assert.equal(report.logs[0]!.replayed, 150 - lastBase);
    assert.equal(report.orphanEntries, 0);
    assert.deepEqual(await counters(log), range(0, 150));
    // The replayed records are in the log itself now: the journal was checkpointed away.
    await storage.abandon();
    for (const f of journalFiles(dir)) rmSync(f);
    const again = await reopen(dir);
    assert.deepEqual(await counters(again.log), range(0, 150));
    await again.storage.close();
  });

  test('a whole lost segment file is restored from the journal', async () => {
    const dir = tmp.fresh();
    const { logDir, bases } = await writeLog(dir, 120, { durability: 'fsync', segmentBytes: 2048 }, 'abandon');
    const lastBase = bases[bases.length - 1]!;
    rmSync(`${logDir}/${segName(lastBase)}`);
    truncateSync(`${logDir}/${segName(bases[bases.length - 2]!)}`, 16); // and the one before lost its data too
    const { storage, log, report } = await reopen(dir);
    assert.equal(report.logs[0]!.replayed, 120 - bases[bases.length - 2]!);
    assert.deepEqual(await counters(log), range(0, 120));
    await storage.close();
  });

  test('a journal with a torn last entry: replay stops before it and reports it', async () => {
    const dir = tmp.fresh();
    const { logDir, bases } = await writeLog(dir, 100, { durability: 'fsync' }, 'abandon');
    assert.equal(bases.length, 1);
    const files = journalFiles(dir);
    const jfile = files[files.length - 1]!;
    const entries = journalEntries(jfile);
    assert.ok(entries.length >= 5, `${entries.length} entries`);
    const lastEntry = entries[entries.length - 1]!;
    // The records the last entry carries: that round's fsync never finished, so they were
    // never acknowledged, and the log lost them too.
    const firstInLast = readFileSync(jfile).readUInt32LE(lastEntry.pos + 24 + 12);
    truncateSync(jfile, lastEntry.pos + 24 + Math.floor(lastEntry.len / 2));
    const seg = `${logDir}/${segName(0)}`;
    const keep = 40;
    truncateSync(seg, recordStarts(seg)[keep]!);
    const { storage, log, report } = await reopen(dir);
    assert.equal(report.journal.entries, entries.length - 1);
    assert.match(report.journal.tornTail ?? '', /runs past the end/);
    assert.equal(report.logs[0]!.replayed, firstInLast - keep);
    assert.deepEqual(await counters(log), range(0, firstInLast));
    assert.equal(log.nextOffset, firstInLast);
    await storage.close();
  });

  test('a torn entry header (bad CRC) is reported and nothing after it is applied', async () => {
    const dir = tmp.fresh();
    await writeLog(dir, 50, { durability: 'fsync' }, 'abandon');
    const jfile = journalFiles(dir).at(-1)!;
    const entries = journalEntries(jfile);
    const victim = entries[entries.length - 2]!;
    const fd = openSync(jfile, 'r+');
    writeSync(fd, Buffer.from([0xff, 0xff]), 0, 2, victim.pos + 10); // inside the CRC-covered header
    closeSync(fd);
    const { storage, log, report } = await reopen(dir);
    assert.match(report.journal.tornTail ?? '', /header CRC/);
    assert.equal(report.journal.entries, entries.length - 2);
    assert.deepEqual(await counters(log), range(0, 50), 'the log itself had everything');
    await storage.close();
  });

  test('an empty journal file left by a crash right after a roll does not swallow the next journal', async () => {
    const dir = tmp.fresh();
    const { logDir } = await writeLog(dir, 60, { durability: 'fsync' }, 'abandon');
    const files = journalFiles(dir);
    const entries = journalEntries(files.at(-1)!);
    const nextSeq = entries.at(-1)!.seq + 1;
    // The roll created the next file (named by its first sequence number) and then the process died.
    writeFileSync(`${dir}/journal/${String(nextSeq).padStart(20, '0')}.jnl`, '');
    const seg = `${logDir}/${segName(0)}`;
    truncateSync(seg, recordStarts(seg)[30]!);
    const first = await reopen(dir);
    assert.equal(first.report.logs[0]!.replayed, 30);
    assert.deepEqual(await counters(first.log), range(0, 60));
    // Acknowledged records after the recovery must be in a journal file that still exists.
    for (let i = 60; i < 90; i++) first.log.append(payloadFor(i));
    await first.log.flushed();
    await first.storage.abandon();
    // Power loss again: the log's pages for the new records are gone.
    truncateSync(seg, recordStarts(seg)[60]!);
    const second = await reopen(dir);
    assert.deepEqual(await counters(second.log), range(0, 90));
    assert.equal(second.report.logs[0]!.replayed, 30);
    await second.storage.close();
  });

  test('journal entries of a deleted log are counted as orphans and ignored', async () => {
    const dir = tmp.fresh();
    const { storage } = await Storage.open(dir, NO_TIMER);
    const a = await storage.openLog('a', { durability: 'fsync' });
    const b = await storage.openLog('b', { durability: 'fsync' });
    for (let i = 0; i < 20; i++) {
      a.append(payloadFor(i));
      b.append(payloadFor(i));
    }
    await Promise.all([a.flushed(), b.flushed()]);
    const bDir = b.dir;
    await storage.abandon();
    rmSync(bDir, { recursive: true });
    const { storage: s2, report } = await Storage.open(dir, NO_TIMER);
    assert.ok(report.orphanEntries > 0);
    assert.deepEqual(s2.logNames(), ['a']);
    assert.deepEqual(await counters(s2.getLog('a')!), range(0, 20));
    await s2.close();
  });
});

describe('storage crash fixtures: queue stores', () => {
  async function writeQueue(dir: string, n: number, ackFirst: number): Promise<string> {
    const { storage } = await Storage.open(dir, NO_TIMER);
    const { store } = await storage.openQueue('q', { durability: 'os' });
    for (let i = 0; i < n; i++) store.enqueue(payloadFor(i));
    await store.flushed();
    for (let i = 0; i < ackFirst; i++) {
      let m = store.shift();
      if (m === null) {
        await store.fill();
        m = store.shift();
      }
      store.ack(m!.ref);
    }
    await storage.committer.settled();
    const logDir = storage.getLog('q')!.dir;
    await store.close();
    await storage.abandon();
    return logDir;
  }

  async function openQueue(dir: string) {
    const { storage, report: sreport } = await Storage.open(dir, NO_TIMER);
    const { store, report } = await storage.openQueue('q', { durability: 'os' });
    return { storage, store, report, sreport };
  }

  test('an ack file naming an offset past the data is reported as orphanAcks and does not ack later messages', async () => {
    const dir = tmp.fresh();
    const logDir = await writeQueue(dir, 10, 3);
    const acksFile = `${logDir}/${segName(0).replace('.seg', '.acks')}`;
    assert.equal(statSync(acksFile).size, 12);
    const orphan = Buffer.alloc(8);
    orphan.writeUInt32LE(14, 0); // past the 10 messages
    orphan.writeUInt32LE(1_000_000, 4);
    appendFileSync(acksFile, orphan);
    const q1 = await openQueue(dir);
    assert.equal(q1.report.orphanAcks, 2);
    assert.equal(q1.report.queue, 'q');
    assert.equal(q1.store.readyCount, 7);
    // The segment grows past the orphan's offset; the message there is not acked by it.
    for (let i = 10; i < 20; i++) q1.store.enqueue(payloadFor(i));
    await q1.store.flushed();
    await q1.store.close();
    await q1.storage.close();
    const q2 = await openQueue(dir);
    assert.equal(q2.report.orphanAcks, 0, 'the orphans were pruned');
    assert.equal(q2.store.readyCount, 17);
    assert.deepEqual(await drainCounters(q2.store), range(3, 20));
    await q2.store.close();
    await q2.storage.close();
  });

  test('a torn last entry in an ack file is dropped and later acks stay aligned', async () => {
    const dir = tmp.fresh();
    const logDir = await writeQueue(dir, 10, 2);
    const acksFile = `${logDir}/${segName(0).replace('.seg', '.acks')}`;
    appendFileSync(acksFile, Buffer.from([5, 0])); // half an entry
    const q1 = await openQueue(dir);
    assert.equal(q1.store.readyCount, 8);
    for (let i = 0; i < 2; i++) {
      let m = q1.store.shift();
      if (m === null) {
        await q1.store.fill();
        m = q1.store.shift();
      }
      q1.store.ack(m!.ref);
    }
    await q1.storage.committer.settled();
    await q1.store.close();
    await q1.storage.abandon();
    const q2 = await openQueue(dir);
    assert.equal(q2.report.orphanAcks, 0);
    assert.deepEqual(await drainCounters(q2.store), range(4, 10));
    await q2.store.close();
    await q2.storage.close();
  });

  test('an ack file whose segment is gone is deleted on open', async () => {
    const dir = tmp.fresh();
    const logDir = await writeQueue(dir, 5, 1);
    writeFileSync(`${logDir}/${segName(1_000_000).replace('.seg', '.acks')}`, Buffer.alloc(8));
    const q = await openQueue(dir);
    assert.equal(q.store.readyCount, 4);
    assert.deepEqual(
      readdirSync(logDir).filter((n) => n.endsWith('.acks')),
      [segName(0).replace('.seg', '.acks')],
    );
    await q.store.close();
    await q.storage.close();
  });

  test('a queue whose last segment has the wrong version loses only that segment and says so', async () => {
    const dir = tmp.fresh();
    const { storage } = await Storage.open(dir, NO_TIMER);
    const { store } = await storage.openQueue('q', { durability: 'os', segmentBytes: 4096 });
    for (let i = 0; i < 100; i++) store.enqueue(payloadFor(i));
    await store.flushed();
    const log = storage.getLog('q')!;
    const bases = log.segmentBases();
    const logDir = log.dir;
    await store.close();
    await storage.close();
    const victim = `${logDir}/${segName(bases.at(-1)!)}`;
    const fd = openSync(victim, 'r+');
    writeSync(fd, Buffer.from([7, 0]), 0, 2, 4);
    closeSync(fd);
    const q = await Storage.open(dir, NO_TIMER);
    assert.deepEqual(q.report.logs[0]!.quarantined, [`${victim}.corrupt`]);
    const { store: s2 } = await q.storage.openQueue('q');
    assert.equal(s2.readyCount, bases.at(-1)!);
    assert.deepEqual(await drainCounters(s2), range(0, bases.at(-1)!));
    await s2.close();
    await q.storage.close();
  });
});

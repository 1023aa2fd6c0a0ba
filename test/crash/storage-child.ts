// Child process for the storage SIGKILL test: appends until it is killed, printing each record
// only after its flushed() resolved, so the parent knows exactly which ones were acknowledged.
//   node storage-child.js <dir> <log|queue|queue-large> <run>
// stdout lines: "ready <nextOffset>", "ok <offset> <counter>", "ack <ref>"
// queue-large: messages of 64-200 KiB among small ones, so that large ones are held while the
// consumer has them and elided when it acks them first (segment-log.ts "Held records").
import { Storage } from '../../src/storage/mod.js';
import { largePayloadFor, payloadFor } from '../contract/storage-helpers.js';

const [dir, mode, runArg] = process.argv.slice(2);
if (dir === undefined || (mode !== 'log' && mode !== 'queue' && mode !== 'queue-large') || runArg === undefined) {
  throw new Error('usage: storage-child <dir> <log|queue|queue-large> <run>');
}
const run = Number(runArg);

// Frequent checkpoints and small journal files, so kills land in those paths too. Odd runs
// journal every round, even runs fsync the one log directly, so both commit paths get killed.
const { storage } = await Storage.open(dir, {
  checkpointIntervalMs: 50,
  journalSegmentBytes: 256 * 1024,
  checkpointBytes: 512 * 1024,
  directSyncMaxLogs: run % 2 === 1 ? 0 : 2,
});
// Writes to a pipe are synchronous on Linux, so a printed line is never lost to the kill.
const say = (line: string): void => void process.stdout.write(`${line}\n`);

let next = 0;
const counter = (): number => run * 1_000_000 + next++;

if (mode === 'log') {
  const log = await storage.openLog('l', { durability: 'fsync', segmentBytes: 64 * 1024 });
  say(`ready ${log.nextOffset}`);
  const appender = async (): Promise<void> => {
    for (;;) {
      const c = counter();
      const off = log.append(payloadFor(c, 3000));
      await log.flushed();
      say(`ok ${off} ${c}`);
    }
  };
  await Promise.all(Array.from({ length: 24 }, appender));
} else {
  const large = mode === 'queue-large';
  const { store } = await storage.openQueue('q', {
    durability: 'fsync',
    segmentBytes: large ? 1024 * 1024 : 64 * 1024,
    memoryWindowBytes: large ? 512 * 1024 : 16 * 1024,
    elideWaitMs: large ? 20 : undefined,
  });
  say(`ready ${store.readyCount}`);
  // queue-large: like the broker's Queue.dispatch, a consumer with credit takes each message as
  // it is enqueued, before its round starts; it acks most a few ms later (elided if that beats
  // the round) and keeps the rest (written once elideWaitMs runs out). No requeues: a requeued
  // message waits to be read back, and the queue would fall behind the producers.
  let taken = 0;
  const dispatch = (): void => {
    for (let m = store.shift(); m !== null; m = store.shift()) {
      const ref = m.ref;
      const k = taken++;
      if (k % 5 === 4) continue;
      setTimeout(() => {
        store.ack(ref);
        say(`ack ${ref}`);
      }, k % 11);
    }
  };
  const producer = async (): Promise<void> => {
    for (;;) {
      const c = counter();
      const ref = store.enqueue(large && c % 4 !== 3 ? largePayloadFor(c) : payloadFor(c, 3000));
      if (large) dispatch();
      await store.flushed();
      say(`ok ${ref} ${c}`);
    }
  };
  // One consumer acks about half of what it takes and requeues the rest now and then.
  const consumer = async (): Promise<void> => {
    for (let k = 0; ; k++) {
      let m = store.shift();
      if (m === null) {
        await store.fill();
        m = store.shift();
        if (m === null) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
      }
      if (k % 2 === 0) {
        store.ack(m.ref);
        say(`ack ${m.ref}`);
      } else if (k % 7 === 1) store.requeue(m.ref);
      if (k % 16 === 0) await store.flushed();
    }
  };
  const refill = async (): Promise<void> => {
    for (;;) {
      if (store.readyCount > 0) await store.fill();
      dispatch();
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  if (large) await Promise.all([...Array.from({ length: 4 }, producer), refill()]);
  else await Promise.all([...Array.from({ length: 16 }, producer), consumer()]);
}

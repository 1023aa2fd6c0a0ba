// Child process for the schedule crash tests, killed with SIGKILL by the parent. It prints a
// line only after the flushed() that made it durable resolved, so the parent knows exactly
// what was acknowledged (writes to a pipe are synchronous on Linux: a printed line survives).
//   node schedule-child.js add <dir> <run>    adds entries; prints "a <id> <dueAt> <group>"
//   node schedule-child.js fire <dir> <seed>  seeds <seed> due entries if empty ("seeded"),
//                                             then takes, dones and flushes; prints "d <id>"
import { Storage } from '../../src/storage/storage.js';
import { FileScheduleStore } from '../../src/storage/schedule/file-schedule-store.js';

const [mode, dir, arg] = process.argv.slice(2);
if (dir === undefined || arg === undefined) throw new Error('usage: schedule-child add|fire <dir> <n>');
const { storage } = await Storage.open(dir);
// Small segments so that kills also land around segment reclamation.
const { store } = await FileScheduleStore.open(storage, 'delays', { durability: 'fsync', segmentBytes: 64 * 1024, bucketMs: 60_000 });
const out = (s: string): void => {
  process.stdout.write(s);
};

if (mode === 'add') {
  const run = Number(arg);
  out('ready\n');
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; ; i++) {
      const batch: string[] = [];
      for (let k = 0; k < 1 + (i % 20); k++) {
        const dueAt = Date.now() + 3_600_000 + Math.floor(Math.random() * 30 * 86_400_000);
        const group = `ex${(w + k) % 3}`;
        const id = store.add(dueAt, group, Buffer.from(`r${run}w${w}i${i}k${k}`));
        batch.push(`a ${id} ${dueAt} ${group} r${run}w${w}i${i}k${k}\n`);
      }
      await store.flushed();
      out(batch.join(''));
    }
  };
  await Promise.all([0, 1, 2, 3].map(writer));
} else if (mode === 'fire') {
  if (store.count() === 0) {
    const now = Date.now();
    for (let i = 0; i < Number(arg); i++) store.add(now - 1000 - (i % 5000), `ex${i % 4}`, Buffer.from(`m${i}`));
    await store.flushed();
    out('seeded\n');
  }
  out('ready\n');
  const firer = async (): Promise<void> => {
    for (;;) {
      const got = await store.takeDue(Date.now(), 1 + Math.floor(Math.random() * 50));
      if (got.length === 0) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      for (const e of got) store.done(e.id);
      await store.flushed();
      out(got.map((e) => `d ${e.id}\n`).join(''));
    }
  };
  await Promise.all([firer(), firer(), firer()]);
}

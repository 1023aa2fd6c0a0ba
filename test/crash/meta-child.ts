// Child process for the definitions-store crash test: writes definitions until it is killed
// with SIGKILL, printing each change only after its promise resolved (so the parent knows
// exactly which ones were acknowledged).
//   node meta-child.js <dir> <run> <compactAfter>
// stdout lines: "ready", "put <key> <value as JSON>", "del <key>"
import { FileMetaStore } from '../../src/storage/meta/file-meta-store.js';

const [dir, run, compactAfter] = process.argv.slice(2);
if (dir === undefined || run === undefined || compactAfter === undefined) throw new Error('usage: meta-child <dir> <run> <compactAfter>');

const { store } = await FileMetaStore.open(dir, { durability: 'fsync', compactAfter: Number(compactAfter) });
// Writes to a pipe are synchronous on Linux, so a printed line is never lost to the kill.
process.stdout.write('ready\n');


let next = 0;
async function writer(): Promise<void> {
  for (;;) {
    const i = next++;
    const key = `r${run}-${i}`;
    const value = { run, i, name: `q-${i}-ünï`, args: { 'x-max-length': i, tags: [run, i % 7] } };
    await store.put('queue', key, value);
    process.stdout.write(`put ${key} ${JSON.stringify(value)}\n`);
    // Every third key is deleted again, so an acknowledged delete can be checked too.
    if (i % 3 === 0) {
      await store.delete('queue', key);
      process.stdout.write(`del ${key}\n`);
    }
  }
}

// Several writers, so rounds carry more than one change when the kill lands.
await Promise.all([writer(), writer(), writer(), writer(), writer(), writer(), writer(), writer()]);

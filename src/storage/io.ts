/**
 * Promise wrappers over the callback fs API. The callback API avoids FileHandle's per-call
 * object churn, which matters for the thousands of writes per second of the commit loop.
 */
import * as fs from 'node:fs';

export function openFile(path: string, flags: string | number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, 0o644, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function closeFile(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function writevAt(fd: number, bufs: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let total = 0;
    for (const b of bufs) total += b.length;
    const done = (err: NodeJS.ErrnoException | null, written: number): void => {
      if (err) return reject(err);
      if (written === total) return resolve(written);
      // Short write: retry the remainder (rare; the kernel may cut very large writevs).
      writevAt(fd, sliceFrom(bufs, written), position + written).then((w) => resolve(written + w), reject);
    };
    fs.writev(fd, bufs, position, done);
  });
}

function sliceFrom(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/**
 * Synchronous positional writev, for small writes that only reach the page cache: a few
 * microseconds inline beat a thread-pool round trip, and 100 logs' writes in one round no
 * longer queue in front of the journal's (bench/RESULTS.md).
 */
export function writevAtSync(fd: number, bufs: Buffer[], position: number): void {
  let total = 0;
  for (const b of bufs) total += b.length;
  let written = fs.writevSync(fd, bufs, position);
  while (written < total) written += fs.writevSync(fd, sliceFrom(bufs, written), position + written);
}

export function readAt(fd: number, buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.read(fd, buf, bufOffset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

/**
 * Synchronous positional read, for small reads that the page cache almost always serves: a
 * few microseconds inline against 10-80 us for a thread-pool round trip.
 */
export function readAtSync(fd: number, buf: Buffer, bufOffset: number, length: number, position: number): number {
  return fs.readSync(fd, buf, bufOffset, length, position);
}

export function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** fdatasync with a callback: no promise, for the commit round's hot path. */
export function datasyncThen(fd: number, done: (err: Error | null) => void): void {
  fs.fdatasync(fd, done);
}

export function fsyncFile(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

export function truncateFd(fd: number, len: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));
}

/** fsync a directory so that creates, renames and unlinks inside it are durable. */
export async function fsyncDir(path: string): Promise<void> {
  const fd = await openFile(path, 'r');
  try {
    await fsyncFile(fd);
  } finally {
    await closeFile(fd);
  }
}

/** Write a small file atomically: tmp, fsync, rename, fsync the directory. */
export async function writeFileAtomic(dir: string, name: string, data: Buffer | string): Promise<void> {
  const tmp = `${dir}/${name}.tmp`;
  const fd = await openFile(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    await writevAt(fd, [buf], 0);
    await fsyncFile(fd);
  } finally {
    await closeFile(fd);
  }
  await fs.promises.rename(tmp, `${dir}/${name}`);
  await fsyncDir(dir);
}

// The data directory lock is held exactly as long as a live owner holds it: a zombie owner, a pid
// now used by another program, or a LOCK written before the last boot does not hold it; a live
// owner does. The owners here are real processes (python3 forks a child and never reaps it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { DataDirLock, lockOwnerLine } from '../../src/storage/data-dir-lock.js';

const linux = process.platform === 'linux';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'sluice-lock-'));
}

function state(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '';
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A child process that forks a grandchild which exits at once and is never reaped. */
async function zombie(): Promise<{ parent: ChildProcess; pid: number }> {
  const parent = spawn('python3', ['-c', 'import os,time\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(120)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [chunk] = (await once(parent.stdout!, 'data')) as [Buffer];
  const pid = Number(chunk.toString().trim());
  await waitFor(() => state(pid) === 'Z', 'the grandchild to become a zombie');
  return { parent, pid };
}

async function sleeper(): Promise<ChildProcess> {
  const p = spawn('sleep', ['120'], { stdio: 'ignore' });
  await once(p, 'spawn');
  return p;
}

test('DataDirLock: a zombie owner (killed, not yet reaped) does not hold the lock', { skip: !linux && 'needs /proc' }, async () => {
  const dir = tempDir();
  const { parent, pid } = await zombie();
  try {
    // The LOCK the broker wrote before it was killed: its own pid and start time.
    writeFileSync(join(dir, 'LOCK'), lockOwnerLine(pid));
    assert.equal(state(pid), 'Z');
    const lock = await DataDirLock.acquire(dir);
    assert.equal(readFileSync(lock.path, 'utf8'), lockOwnerLine());
    await lock.release();
  } finally {
    parent.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DataDirLock: a pid reused by a live non-Sluice process does not hold the lock; its true owner does', { skip: !linux && 'needs /proc' }, async () => {
  const dir = tempDir();
  const other = await sleeper();
  try {
    const [pid, start, boot] = lockOwnerLine(other.pid!).trim().split(' ');
    // Written by a broker that had this pid and started at another time.
    writeFileSync(join(dir, 'LOCK'), `${pid} ${Number(start) + 12345} ${boot}\n`);
    const lock = await DataDirLock.acquire(dir);
    await lock.release();
    // The same line with the right start time: that process is the live owner.
    writeFileSync(join(dir, 'LOCK'), lockOwnerLine(other.pid!));
    await assert.rejects(DataDirLock.acquire(dir), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'SLUICE_STORAGE_LOCKED');
      assert.match(e.message, new RegExp(`in use by process ${other.pid}`));
      return true;
    });
  } finally {
    other.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DataDirLock: a LOCK from another boot does not hold the lock, even if its pid is alive', { skip: !linux && 'needs /proc' }, async () => {
  const dir = tempDir();
  const other = await sleeper();
  try {
    const [pid, start] = lockOwnerLine(other.pid!).trim().split(' ');
    writeFileSync(join(dir, 'LOCK'), `${pid} ${start} 00000000-0000-4000-8000-000000000000\n`);
    const lock = await DataDirLock.acquire(dir);
    await lock.release();
  } finally {
    other.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DataDirLock: a pid-only LOCK of an older version holds while its process lives, not once it is gone', async () => {
  const dir = tempDir();
  const other = await sleeper();
  try {
    writeFileSync(join(dir, 'LOCK'), String(other.pid));
    await assert.rejects(DataDirLock.acquire(dir), /in use by process/);
    other.kill('SIGKILL');
    await once(other, 'exit');
    const lock = await DataDirLock.acquire(dir);
    await lock.release();
  } finally {
    other.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

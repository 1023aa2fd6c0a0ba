/**
 * Keeps a second broker off a data directory. Node has no flock, so the lock is a file created
 * exclusively that names its owner: `<pid> <start time> <boot id>`. A lock is held exactly as
 * long as that process lives, so a LOCK is taken over when its owner
 * - is gone, or is a zombie (a broker killed with its process group by kill -9 stays a zombie
 *   until someone reaps it, and `kill(pid, 0)` still succeeds on a zombie);
 * - is a different process that got the same pid (its start time differs: pids are reused after
 *   a reboot, and from 1 again in a container);
 * - was written before the last boot (the boot id differs).
 * On Linux /proc/<pid>/stat gives the state and the start time, and /proc/sys/kernel/random/boot_id
 * the boot. Elsewhere only "no such process" frees a lock.
 */
import { readFileSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { SluiceError } from '../common/mod.js';

const LOCK_FILE = 'LOCK';

/** What /proc says of a pid: `undefined` where there is no /proc (not Linux). */
interface ProcStat {
  readonly state: string;
  readonly startTime: string;
}

function procStat(pid: number): ProcStat | null | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return hasProc() ? null : undefined;
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces and ')', so fields are
  // counted from the last ')': state is field 3, starttime field 22.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
}

let procMounted: boolean | undefined;
function hasProc(): boolean {
  if (procMounted === undefined) {
    try {
      readFileSync('/proc/self/stat');
      procMounted = true;
    } catch {
      procMounted = false;
    }
  }
  return procMounted;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '-';
  }
}

/** The line this process writes into LOCK. */
export function lockOwnerLine(pid: number = process.pid): string {
  return `${pid} ${procStat(pid)?.startTime ?? '-'} ${bootId()}\n`;
}

function signalReaches(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the owner named by a LOCK's text still holds it. A LOCK of an older version holds only
 * a pid; then a live, non-zombie process of that pid holds it.
 */
export function lockHeld(text: string): { held: boolean; pid: number } {
  const [pidText, startTime, boot] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return { held: false, pid: 0 };
  if (boot !== undefined && boot !== '-' && boot !== bootId()) return { held: false, pid };
  const stat = procStat(pid);
  if (stat === null) return { held: false, pid };
  if (stat === undefined) return { held: signalReaches(pid), pid };
  if (stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') return { held: false, pid };
  if (startTime !== undefined && startTime !== '-' && startTime !== stat.startTime) return { held: false, pid };
  return { held: true, pid };
}

export class DataDirLock {
  readonly path: string;
  private constructor(path: string) {
    this.path = path;
  }

  static async acquire(dir: string): Promise<DataDirLock> {
    const path = `${dir}/${LOCK_FILE}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(path, lockOwnerLine(), { flag: 'wx' });
        return new DataDirLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const { held, pid } = lockHeld(await readFile(path, 'utf8').catch(() => ''));
        // This process's own LOCK (a store reopened after abandon()) is taken over.
        if (held && pid !== process.pid) {
          throw new SluiceError('SLUICE_STORAGE_LOCKED', `${dir} is in use by process ${pid}`);
        }
        await unlink(path).catch(() => undefined);
      }
    }
    throw new SluiceError('SLUICE_STORAGE_LOCKED', `could not lock ${dir}`);
  }

  async release(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
  }
}

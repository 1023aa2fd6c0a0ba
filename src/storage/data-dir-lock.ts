/**
 * Keeps a second broker off a data directory. Node has no flock, so the lock is a file holding
 * the owner's pid, created exclusively; a lock whose pid is gone (a crashed broker) is taken over.
 */
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { SluiceError } from '../common/mod.js';

const LOCK_FILE = 'LOCK';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
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
        await writeFile(path, String(process.pid), { flag: 'wx' });
        return new DataDirLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
          throw new SluiceError('SLUICE_STORAGE_LOCKED', `${dir} is in use by process ${owner}`);
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

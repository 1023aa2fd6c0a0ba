/**
 * The group names of a schedule, by id, with the pending-entry count of each. Ids are given in
 * order of first use and recorded in `<log dir>/time/groups` (time-bucket.ts has the record
 * format) so that bucket entries can name a group in 4 bytes. The file is derived state
 * (see file-schedule-store.ts): appended in the commit round, never fsynced, and cut back to
 * its last whole record on open.
 */
import { readFile, truncate } from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import { closeFile, openFile, writevAt } from '../io.js';
import { encodeGroupRecord, GROUPS_FILE, parseGroups } from './time-bucket.js';

const APPEND_FILE = FS.O_WRONLY | FS.O_CREAT;

export class ScheduleGroups {
  readonly #path: string;
  // id -> name, UTF-8 bytes and pending count; name -> id.
  #ids = new Map<string, number>();
  #names: string[] = [];
  #bytes: Buffer[] = [];
  #counts: number[] = [];
  /** Records of groups added since the last round, not yet in the file. */
  #pending: Buffer[] = [];
  #fileBytes = 0;
  #fd = -1;

  /** `dir` is the time index directory. */
  constructor(dir: string) {
    this.#path = `${dir}/${GROUPS_FILE}`;
  }

  /** The id of `group`, giving it the next id (recorded in the next round) if it has none. */
  idOf(group: string): number {
    let gid = this.#ids.get(group);
    if (gid !== undefined) return gid;
    const bytes = Buffer.from(group, 'utf8');
    if (bytes.length > 0xffff) throw new RangeError('group name longer than 65535 bytes');
    gid = this.#names.length;
    this.#set(gid, group, bytes);
    this.#pending.push(encodeGroupRecord(gid, bytes));
    return gid;
  }

  /** The id of `group` if it has one; never assigns. */
  find(group: string): number | undefined {
    return this.#ids.get(group);
  }

  #set(gid: number, name: string, bytes: Buffer): void {
    this.#ids.set(name, gid);
    this.#names[gid] = name;
    this.#bytes[gid] = bytes;
    this.#counts[gid] = 0;
  }

  /** The name of a known id. */
  name(gid: number): string {
    return this.#names[gid]!;
  }

  /** The UTF-8 name of a known id. */
  bytes(gid: number): Buffer {
    return this.#bytes[gid]!;
  }

  /** Whether `gid` names a group (an id lost with the file's torn tail does not). */
  has(gid: number): boolean {
    return this.#names[gid] !== undefined;
  }

  count(gid: number): number {
    return this.#counts[gid]!;
  }

  added(gid: number): void {
    this.#counts[gid]!++;
  }

  removed(gid: number): void {
    this.#counts[gid]!--;
  }

  /** Groups with pending entries, by name. */
  counts(): Map<string, number> {
    const m = new Map<string, number>();
    for (let gid = 0; gid < this.#names.length; gid++) {
      const n = this.#counts[gid];
      if (n !== undefined && n > 0) m.set(this.#names[gid]!, n);
    }
    return m;
  }

  get hasPending(): boolean {
    return this.#pending.length > 0;
  }

  /** Hands the records not yet written to a round (which passes them to write()). */
  takePending(): Buffer[] {
    const groups = this.#pending;
    this.#pending = [];
    return groups;
  }

  async write(records: Buffer[]): Promise<void> {
    if (this.#fd < 0) this.#fd = await openFile(this.#path, APPEND_FILE);
    const pos = this.#fileBytes;
    for (const g of records) this.#fileBytes += g.length;
    await writevAt(this.#fd, records, pos);
  }

  /** Reads the groups file at open, cutting a torn tail. */
  async load(): Promise<void> {
    let data: Buffer;
    try {
      data = await readFile(this.#path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const { names, validBytes } = parseGroups(data);
    if (validBytes < data.length) await truncate(this.#path, validBytes);
    this.#fileBytes = validBytes;
    // Ids lost with a torn tail leave holes (undefined); new groups take ids after the highest.
    for (const [gid, name] of names) this.#set(gid, name, Buffer.from(name, 'utf8'));
  }

  async close(): Promise<void> {
    if (this.#fd >= 0) await closeFile(this.#fd);
    this.#fd = -1;
  }
}

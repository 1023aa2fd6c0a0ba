/**
 * Who may connect and what they may touch: users with RabbitMQ password hashes, loopback-only
 * users (guest), and per-vhost configure/write/read permissions (users.ts has the formats).
 * Answers with the reply RabbitMQ gives: 403 on the connection for a refused login, 403 on the
 * channel for a refused operation.
 */
import { accessRefused, BrokerError } from './errors.js';
import type { MetaStore } from '../storage/mod.js';
import { checkPassword, hashPassword, permits, type PermissionRecord, type UserRecord } from './users.js';

export type Permission = 'configure' | 'write' | 'read';

export class Access {
  readonly #meta: MetaStore;
  readonly #loopbackUsers: Set<string>;
  /**
   * The last check that passed: a publisher asks the same question for every message, and the
   * answer only changes with setPermissions (RabbitMQ caches it per channel the same way).
   */
  #passed: { user: string; vhost: string; perm: Permission; kind: string; name: string } | null = null;

  constructor(meta: MetaStore, loopbackUsers: Iterable<string>) {
    this.#meta = meta;
    this.#loopbackUsers = new Set(loopbackUsers);
  }

  async addUser(name: string, password: string, tags: string[] = []): Promise<void> {
    const rec: UserRecord = { name, passwordHash: hashPassword(password), tags };
    await this.#meta.put('user', name, rec);
  }

  async setPermissions(p: PermissionRecord): Promise<void> {
    this.#passed = null;
    await this.#meta.put('permission', `${p.user}\u0000${p.vhost}`, p);
    this.#passed = null;
  }

  /** Checks a login; `loopback` says whether the client connected from 127.0.0.0/8 or ::1. */
  authenticate(user: string, password: string, loopback: boolean): UserRecord {
    const rec = this.#meta.get<UserRecord>('user', user);
    if (rec === undefined || !checkPassword(password, rec.passwordHash)) {
      throw new BrokerError('access-refused', `ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.`, 'connection');
    }
    if (!loopback && this.#loopbackUsers.has(user)) {
      throw new BrokerError('access-refused', `ACCESS_REFUSED - user '${user}' can only connect via localhost`, 'connection');
    }
    return rec;
  }

  permission(user: string, vhost: string): PermissionRecord | undefined {
    return this.#meta.get<PermissionRecord>('permission', `${user}\u0000${vhost}`);
  }

  /** Throws 403 ACCESS_REFUSED unless `user` has `perm` on the resource in `vhost`. */
  check(user: string, vhost: string, perm: Permission, kind: 'queue' | 'exchange', name: string): void {
    const last = this.#passed;
    if (last !== null && last.name === name && last.user === user && last.vhost === vhost && last.perm === perm && last.kind === kind) return;
    const p = this.permission(user, vhost);
    const resource = kind === 'exchange' && name === '' ? 'amq.default' : name;
    if (p === undefined || !permits(p[perm], resource)) {
      throw accessRefused(`${perm} access to ${kind} '${resource}' in vhost '${vhost}' refused for user '${user}'`);
    }
    this.#passed = { user, vhost, perm, kind, name };
  }
}

/**
 * The deduplication caches of the exchanges that ask for one (rabbitmq-message-deduplication):
 * one DedupCache per exchange incarnation, each on its own log so that a delete racing a
 * redeclare never shares one.
 */
import { randomBytes } from 'node:crypto';
import type { Storage } from '../../storage/mod.js';
import type { Exchange, RoutableMessage } from '../exchange/exchange.js';
import { DedupCache } from './dedup-cache.js';
import { DEDUP_HEADER, DEDUP_TTL_HEADER, dedupKey, dedupTtl } from './dedup-key.js';

const LOG_PREFIX = 'dedup/';
const baseName = (vhost: string, exchange: string): string => `${LOG_PREFIX}${encodeURIComponent(vhost)}/${encodeURIComponent(exchange)}`;

export class ExchangeDedup {
  readonly #storage: Storage;
  readonly #caches = new Map<Exchange, DedupCache>();

  constructor(storage: Storage) {
    this.#storage = storage;
  }

  /** A log name for a new exchange incarnation. */
  static newLogName(vhost: string, exchange: string): string {
    return `${baseName(vhost, exchange)}/${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  }

  static logName(ex: Exchange): string {
    return ex.def.dedupLog ?? baseName(ex.def.vhost, ex.name);
  }

  async open(ex: Exchange): Promise<void> {
    const opts = ex.dedup!;
    this.#caches.set(ex, await DedupCache.open(this.#storage, ExchangeDedup.logName(ex), { size: opts.size, ttlMs: opts.ttlMs }));
  }

  /** Closes and deletes the cache of an exchange that is gone (or lost a declare race). */
  async remove(ex: Exchange): Promise<void> {
    const cache = this.#caches.get(ex);
    if (cache === undefined) return;
    this.#caches.delete(ex);
    await cache.close();
    await DedupCache.delete(this.#storage, ExchangeDedup.logName(ex));
  }

  /** Deletes cache logs no exchange in `keep` uses (those of non-durable exchanges). */
  async deleteOthers(keep: Set<string>): Promise<void> {
    for (const name of this.#storage.logNames()) {
      if (name.startsWith(LOG_PREFIX) && !keep.has(name)) await this.#storage.deleteLog(name);
    }
  }

  /**
   * The key is the x-deduplication-header header (Sluice also takes the message id when it is
   * absent); a key seen within the cache's TTL is a duplicate. x-cache-ttl on the message
   * overrides the TTL. A new key is recorded (on disk after the next flush).
   */
  isDuplicate(ex: Exchange, msg: RoutableMessage): boolean {
    const cache = this.#caches.get(ex);
    if (cache === undefined) return false;
    const h = msg.headers();
    const key = dedupKey(h?.[DEDUP_HEADER] ?? msg.property('message_id'));
    if (key === null) return false;
    return cache.seen(key, Date.now(), dedupTtl(h?.[DEDUP_TTL_HEADER]));
  }

  async close(): Promise<void> {
    for (const cache of this.#caches.values()) await cache.close();
  }
}

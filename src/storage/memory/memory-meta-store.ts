/**
 * MemoryMetaStore: the definitions store without files, for transient brokers and tests.
 * It keeps the FileMetaStore's observable behaviour (JSON round trip, frozen values, errors
 * after close) so code tested against it behaves the same on disk; only durability differs.
 */
import { SluiceError } from '../../common/mod.js';
import {
  MetaState,
  checkKindKey,
  frozenFromJson,
  toJson,
  type MetaStore,
  type MetaStoreStats,
} from '../meta/meta-store.js';

export class MemoryMetaStore implements MetaStore {
  readonly #state = new MetaState();
  #closed = false;
  #records = 0;

  get<T = unknown>(kind: string, key: string): T | undefined {
    return this.#state.get(kind, key) as T | undefined;
  }

  all<T = unknown>(kind: string): Map<string, T> {
    return this.#state.all(kind) as Map<string, T>;
  }

  put(kind: string, key: string, value: unknown): Promise<void> {
    try {
      this.#checkOpen();
      checkKindKey(kind, key);
      this.#state.set(kind, key, frozenFromJson(toJson(value)));
    } catch (e) {
      return Promise.reject(e);
    }
    this.#records++;
    return Promise.resolve();
  }

  delete(kind: string, key: string): Promise<void> {
    try {
      this.#checkOpen();
      checkKindKey(kind, key);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#state.delete(kind, key)) this.#records++;
    return Promise.resolve();
  }

  /** Nothing is written, so there are no rounds; records counts the changes applied. */
  stats(): MetaStoreStats {
    return { rounds: 0, records: this.#records, compactions: 0 };
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #checkOpen(): void {
    if (this.#closed) throw new SluiceError('SLUICE_STORAGE_CLOSED', 'definitions store is closed');
  }
}

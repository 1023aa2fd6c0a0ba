/**
 * A queue: its store, its consumers, and the dispatch loop that hands ready messages to
 * consumers with credit, round-robin among those of the highest priority.
 */
import type { QueueStore, StoredMessage } from '../../storage/mod.js';
import { accessRefused, describe } from '../errors.js';
import { MessageFlags } from '../message.js';
import type { Consumer } from './consumer.js';

export interface QueueDefinition {
  vhost: string;
  name: string;
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  args: Record<string, unknown>;
}

export class Queue {
  readonly def: QueueDefinition;
  readonly store: QueueStore;
  /** The owning connection of an exclusive queue. */
  readonly ownerConnection: number | null;
  #consumers: Consumer[] = [];
  #rr = 0;
  #dispatching = false;
  #filling = false;
  #hadConsumer = false;
  #deleted = false;
  /** Called when an auto-delete queue loses its last consumer. */
  onUnused: ((q: Queue) => void) | null = null;
  /** Where the first message after recovery sits: older transient messages are dropped lazily. */
  readonly recoveredBelow: number;

  constructor(def: QueueDefinition, store: QueueStore, ownerConnection: number | null, recoveredBelow = 0) {
    this.def = def;
    this.store = store;
    this.ownerConnection = ownerConnection;
    this.recoveredBelow = recoveredBelow;
  }

  get name(): string {
    return this.def.name;
  }
  get consumerCount(): number {
    return this.#consumers.length;
  }
  get messageCount(): number {
    return this.store.readyCount;
  }
  get deleted(): boolean {
    return this.#deleted;
  }
  consumers(): readonly Consumer[] {
    return this.#consumers;
  }

  addConsumer(c: Consumer): void {
    if (this.#consumers.some((x) => x.exclusive)) {
      throw accessRefused(`queue '${this.name}' in vhost '${this.def.vhost}' in exclusive use`);
    }
    if (c.exclusive && this.#consumers.length > 0) {
      throw accessRefused(`queue '${this.name}' in vhost '${this.def.vhost}' in exclusive use`);
    }
    // Highest priority first; equal priorities keep arrival order (stable insert).
    let i = this.#consumers.length;
    while (i > 0 && this.#consumers[i - 1]!.priority < c.priority) i--;
    this.#consumers.splice(i, 0, c);
    this.#hadConsumer = true;
    this.dispatch();
  }

  removeConsumer(c: Consumer): void {
    const i = this.#consumers.indexOf(c);
    if (i < 0) return;
    this.#consumers.splice(i, 1);
    if (this.#rr > i) this.#rr--;
    if (this.#consumers.length === 0 && this.#hadConsumer && this.def.autoDelete && this.onUnused) this.onUnused(this);
  }

  markDeleted(): Consumer[] {
    this.#deleted = true;
    const cs = this.#consumers;
    this.#consumers = [];
    return cs;
  }

  /** Takes one ready message for basic.get; may need a disk read first. */
  async get(): Promise<StoredMessage | null> {
    for (;;) {
      const m = this.#take();
      if (m !== null) return m;
      if (this.store.readyCount === 0) return null;
      await this.store.fill();
    }
  }

  /**
   * The next ready message. Transient messages that were in a durable queue's log when the
   * broker restarted are dropped here, lazily, rather than by scanning the queue at start-up.
   */
  #take(): StoredMessage | null {
    for (;;) {
      const m = this.store.shift();
      if (m === null || m.ref >= this.recoveredBelow || (m.flags & MessageFlags.PERSISTENT) !== 0) return m;
      this.store.ack(m.ref);
    }
  }

  /** Hands ready messages to consumers with credit until one side runs out. */
  dispatch(): void {
    if (this.#dispatching || this.#deleted) return;
    this.#dispatching = true;
    try {
      const cs = this.#consumers;
      while (cs.length > 0 && this.store.readyCount > 0) {
        const c = this.#nextConsumer();
        if (c === null) break;
        const m = this.#take();
        if (m === null) {
          if (this.store.readyCount > 0) this.#fillThenDispatch();
          break;
        }
        c.sink.deliver(c, this, m);
        if (c.noAck) this.store.ack(m.ref);
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #fillThenDispatch(): void {
    if (this.#filling) return;
    this.#filling = true;
    this.store.fill().then(
      () => {
        this.#filling = false;
        this.dispatch();
      },
      () => {
        this.#filling = false;
      },
    );
  }

  /** Round-robin over the consumers of the highest priority that has credit. */
  #nextConsumer(): Consumer | null {
    const cs = this.#consumers;
    const n = cs.length;
    let best = -1;
    let bestPriority = -Infinity;
    for (let k = 0; k < n; k++) {
      const i = (this.#rr + k) % n;
      const c = cs[i]!;
      if (c.priority > bestPriority && c.sink.canAccept(c)) {
        best = i;
        bestPriority = c.priority;
        if (c.priority === cs[0]!.priority) break;
      }
    }
    if (best < 0) return null;
    this.#rr = (best + 1) % n;
    return cs[best]!;
  }

  describe(): string {
    return describe('queue', this.name, this.def.vhost);
  }
}

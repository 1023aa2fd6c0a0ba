/**
 * The one commit loop of a node. Appends are encoded into their log's pending buffer at once
 * (synchronously) and the log registers itself here. A round then:
 *   1. asks every registered participant to start its file writes (page cache) and to add
 *      journal entries for its `fsync` data,
 *   2. writes the journal with one writev and fdatasyncs it, once, if it got any entries,
 *   3. waits for all of that and resolves everyone who was waiting on the round.
 * Only one round is in flight; whatever arrives meanwhile joins the next, which starts at
 * setImmediate after the current one ends. Batching therefore comes from load, with no timer
 * (LavinMQ persister.cr, RocketMQ GroupCommitService).
 *
 * Held records: a participant may keep some records out of a round (a queue log holding a large
 * message its consumer is about to ack, so that it never has to be written; segment-log.ts).
 * Such records take a ticket from ticket() when appended. flushed() waits for everything
 * appended before the call, so its waiter resolves at the end of the first round after which
 * no participant still holds a record with a ticket below the count at the call. Holding is
 * bounded in time by the participant, so every waiter resolves. Records without a ticket are
 * never held: the next round carries them.
 */
import type { Journal, JournalBatch } from './journal.js';

export interface RoundParticipant {
  /** Whether this round would give it records that must be made durable by fsync. */
  needsSync?(): boolean;
  /**
   * Detaches pending writes, starts them, and adds journal entries to `batch`; with `direct`
   * it fdatasyncs its own files instead of using the journal.
   */
  beginRound(batch: JournalBatch, direct: boolean): Promise<void> | null;
  /** The round that carried this participant's writes is complete (durable where asked). */
  endRound(err: Error | null): void;
  /**
   * The smallest ticket among the records it still holds back (not yet written), or Infinity.
   * Asked after every round it took part in, and after every round while it holds any.
   */
  heldTicket?(): number;
}

/** Callers of flushed() that wait for the same condition: no held ticket below `seq`. */
interface Waiter {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
  seq: number;
  /** A round has started since the waiter was created: no caller joins it any more. */
  closed: boolean;
}

function waiter(seq: number): Waiter {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A round that fails with nobody awaiting it must not crash the process as an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject, seq, closed: false };
}

export interface CommitStats {
  rounds: number;
  journalSyncs: number;
  journalBytes: number;
  participantsWritten: number;
}

export class GroupCommitter {
  readonly #journal: Journal;
  #dirty: RoundParticipant[] = [];
  #dirtySet = new Set<RoundParticipant>();
  #inFlight: Promise<void> | null = null;
  /** Settles with the round in flight (or later, if records are held): rejects if it failed. */
  #current: Waiter | null = null;
  #scheduled = false;
  /** Pending waiters, oldest first (their seq never decreases); only the last may be open. */
  #waiters: Waiter[] = [];
  /** Tickets handed out so far (see the file comment). */
  #tickets = 0;
  /** Participants holding records back after their last round. */
  #holders = new Set<RoundParticipant>();
  #closed = false;
  readonly stats: CommitStats = { rounds: 0, journalSyncs: 0, journalBytes: 0, participantsWritten: 0 };
  /** Called after every round (the storage uses it to checkpoint early when the journal is large). */
  onRound: (() => void) | null = null;

  readonly #directSyncMax: number;

  /** `directSyncMax`: up to this many logs needing fsync in one round are synced directly. */
  constructor(journal: Journal, directSyncMax = 2) {
    this.#journal = journal;
    this.#directSyncMax = directSyncMax;
  }

  /** Registers a participant with data for the next round. */
  markDirty(p: RoundParticipant): void {
    if (!this.#dirtySet.has(p)) {
      this.#dirtySet.add(p);
      this.#dirty.push(p);
    }
    this.#schedule();
  }

  /** A ticket for a record its participant may hold back from rounds (see the file comment). */
  ticket(): number {
    return this.#tickets++;
  }

  /** Resolves when everything appended before this call is stored per its log's policy. */
  flushed(): Promise<void> {
    // Not #inFlight itself: that always resolves, and a failed round must not confirm anything.
    if (this.#dirty.length === 0 && this.#holders.size === 0) return this.#current?.promise ?? Promise.resolve();
    let w = this.#waiters[this.#waiters.length - 1];
    if (w === undefined || w.closed) {
      w = waiter(this.#tickets);
      this.#waiters.push(w);
    } else {
      w.seq = this.#tickets;
    }
    // With nothing dirty, a holder's own timer or release starts the round that resolves it.
    this.#schedule();
    return w.promise;
  }

  /** Participants holding records back right now (tests, metrics). */
  get holders(): number {
    return this.#holders.size;
  }

  /** Resolves when the round in flight, if any, has ended. */
  async settled(): Promise<void> {
    while (this.#inFlight !== null || (this.#dirty.length > 0 && !this.#closed)) {
      await (this.#inFlight ?? this.flushed());
    }
  }

  /** Resolves when the round in flight, if any, has ended, without starting another. */
  async idle(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }

  get pendingParticipants(): number {
    return this.#dirty.length;
  }

  close(): void {
    this.#closed = true;
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight !== null || this.#closed) return;
    this.#scheduled = true;
    setImmediate(this.#run);
  }

  readonly #run = (): void => {
    this.#scheduled = false;
    if (this.#inFlight !== null || this.#dirty.length === 0 || this.#closed) return;
    this.#inFlight = this.#round().finally(() => {
      this.#inFlight = null;
      if (this.#dirty.length > 0) this.#schedule();
    });
  };

  async #round(): Promise<void> {
    const parts = this.#dirty;
    this.#dirty = [];
    this.#dirtySet.clear();
    // The callers of flushed() so far wait for what they appended before their call (seq); the
    // round's own waiter, for flushed() calls while it is in flight with nothing dirty, waits
    // for everything appended before it started.
    const open = this.#waiters[this.#waiters.length - 1];
    let w: Waiter;
    if (open !== undefined && !open.closed && open.seq === this.#tickets) {
      w = open;
    } else {
      if (open !== undefined) open.closed = true;
      w = waiter(this.#tickets);
      this.#waiters.push(w);
    }
    w.closed = true;
    this.#current = w;
    this.stats.rounds++;
    this.stats.participantsWritten += parts.length;
    const batch = this.#journal.beginBatch();
    const work: Promise<void>[] = [];
    let err: Error | null = null;
    // With few logs to sync, fsyncing them directly costs about what one journal fsync does and
    // writes each byte once instead of twice (journal + log). Past that, fsync cost grows per
    // file (research finding 3), so the journal takes them all.
    let syncing = 0;
    for (const p of parts) if (p.needsSync?.() === true) syncing++;
    const direct = syncing <= this.#directSyncMax;
    for (const p of parts) {
      try {
        const r = p.beginRound(batch, direct);
        if (r !== null) work.push(r);
      } catch (e) {
        err = e as Error;
      }
    }
    if (batch.entries > 0) {
      this.stats.journalSyncs++;
      this.stats.journalBytes += batch.bytes;
      work.push(this.#journal.writeBatch(batch));
    }
    const results = await Promise.allSettled(work);
    for (const r of results) if (r.status === 'rejected' && err === null) err = r.reason as Error;
    for (const p of parts) p.endRound(err);
    if (this.#current === w) this.#current = null;
    this.#settleWaiters(parts, err);
    if (this.onRound !== null) this.onRound();
  }

  /** Resolves the closed waiters whose records are all stored now; a failed round rejects them all. */
  #settleWaiters(parts: RoundParticipant[], err: Error | null): void {
    for (const p of parts) if (p.heldTicket !== undefined) this.#holders.add(p);
    let held = Infinity;
    for (const p of this.#holders) {
      const t = p.heldTicket!();
      if (t === Infinity) this.#holders.delete(p);
      else if (t < held) held = t;
    }
    let n = 0;
    while (n < this.#waiters.length) {
      const w = this.#waiters[n]!;
      if (!w.closed || (err === null && w.seq > held)) break;
      if (err) w.reject(err);
      else w.resolve();
      n++;
    }
    if (n > 0) this.#waiters.splice(0, n);
  }
}

/**
 * The one commit loop of a node. Appends are encoded into their log's pending buffer at once
 * (synchronously) and the log registers itself here. A round then:
 *   1. asks every registered participant to start its file writes (page cache) and to add
 *      journal entries for its `fsync` data,
 *   2. writes the journal with one writev and fdatasyncs it, once, if it got any entries,
 *   3. waits for all of that and resolves everyone who was waiting on the round.
 * Only one round is in flight; whatever arrives meanwhile joins the next, which starts one
 * event-loop turn after the current one ends (two setImmediates: the deliveries of the same
 * publishes are written first). Batching therefore comes from load, with no timer (LavinMQ
 * persister.cr, RocketMQ GroupCommitService).
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

/** How a participant that finishes its part of a round later reports it. */
export type RoundDone = (err: Error | null) => void;

export interface RoundParticipant {
  /** Whether this round would give it records that must be made durable by fsync. */
  needsSync?(): boolean;
  /**
   * Detaches pending writes, starts them, and adds journal entries to `batch`; with `direct`
   * it fdatasyncs its own files instead of using the journal. Returns false when its part is
   * done on return (or it had none), true when it calls `done` once, later, instead.
   */
  beginRound(batch: JournalBatch, direct: boolean, done: RoundDone): boolean;
  /** The round that carried this participant's writes is complete (durable where asked). */
  endRound(err: Error | null): void;
  /**
   * The smallest ticket among the records it still holds back (not yet written), or Infinity.
   * Asked after every round it took part in, and after every round while it holds any.
   */
  heldTicket?(): number;
}

/** Told when everything appended before its whenFlushed() call is stored (`ok`) or the round failed. */
export interface FlushListener {
  flushDone(ok: boolean): void;
}

/**
 * Callers of flushed() and whenFlushed() that wait for the same condition: no held ticket below
 * `seq`. The promise is made only when someone asks for one: the hot path (a channel's confirms)
 * listens with a callback, so a round allocates no promise.
 */
class Waiter {
  seq: number;
  /** A round has started since the waiter was created: no caller joins it any more. */
  closed = false;
  #outcome: Error | null | undefined = undefined;
  #promise: Promise<void> | null = null;
  #resolve: (() => void) | null = null;
  #reject: ((err: Error) => void) | null = null;
  #listeners: FlushListener[] | null = null;

  constructor(seq: number) {
    this.seq = seq;
  }

  get promise(): Promise<void> {
    if (this.#promise === null) {
      const outcome = this.#outcome;
      if (outcome === null) this.#promise = Promise.resolve();
      else if (outcome !== undefined) this.#promise = Promise.reject(outcome);
      else {
        this.#promise = new Promise<void>((res, rej) => {
          this.#resolve = res;
          this.#reject = rej;
        });
      }
      // A round that fails with nobody awaiting it must not crash the process as an unhandled rejection.
      this.#promise.catch(() => undefined);
    }
    return this.#promise;
  }

  listen(l: FlushListener): void {
    if (this.#listeners === null) this.#listeners = [l];
    else this.#listeners.push(l);
  }

  settle(err: Error | null): void {
    this.#outcome = err;
    if (err === null) this.#resolve?.();
    else this.#reject?.(err);
    const ls = this.#listeners;
    if (ls !== null) for (const l of ls) l.flushDone(err === null);
  }
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
  /** A round is in flight (its parts below). */
  #busy = false;
  #roundParts: RoundParticipant[] = [];
  #roundErr: Error | null = null;
  /** Parts of the round in flight not finished yet (participants, the journal write). */
  #outstanding = 0;
  /** Callers of idle()/settled() waiting for the round in flight to end. */
  #endWaiters: Array<() => void> = [];
  /** The waiter of the round in flight, settled with it (or later, if records are held). */
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
    // Not the round's end itself: a failed round must not confirm anything.
    if (this.#dirty.length === 0 && this.#holders.size === 0) return this.#current?.promise ?? Promise.resolve();
    return this.#openWaiter().promise;
  }

  /** flushed() as a callback, for hot paths: no promise, no closure. */
  whenFlushed(l: FlushListener): void {
    if (this.#dirty.length === 0 && this.#holders.size === 0) {
      if (this.#current !== null) this.#current.listen(l);
      else queueMicrotask(() => l.flushDone(true));
      return;
    }
    this.#openWaiter().listen(l);
  }

  #openWaiter(): Waiter {
    let w = this.#waiters[this.#waiters.length - 1];
    if (w === undefined || w.closed) {
      w = new Waiter(this.#tickets);
      this.#waiters.push(w);
    } else {
      w.seq = this.#tickets;
    }
    // With nothing dirty, a holder's own timer or release starts the round that resolves it.
    this.#schedule();
    return w;
  }

  /** Participants holding records back right now (tests, metrics). */
  get holders(): number {
    return this.#holders.size;
  }

  /** Resolves when the round in flight, if any, has ended, and nothing appended is left unwritten. */
  async settled(): Promise<void> {
    while (this.#busy || (this.#dirty.length > 0 && !this.#closed)) {
      await (this.#busy ? this.#roundEnd() : this.flushed());
    }
  }

  /** Resolves when the round in flight, if any, has ended, without starting another. */
  async idle(): Promise<void> {
    while (this.#busy) await this.#roundEnd();
  }

  #roundEnd(): Promise<void> {
    return new Promise((resolve) => this.#endWaiters.push(resolve));
  }

  get pendingParticipants(): number {
    return this.#dirty.length;
  }

  close(): void {
    this.#closed = true;
  }

  #schedule(): void {
    if (this.#scheduled || this.#busy || this.#closed) return;
    this.#scheduled = true;
    setImmediate(this.#afterDeliveries);
  }

  /**
   * A round starts one loop turn after the append that asked for it: the deliveries and replies
   * that the same publishes produced (flushed at setImmediate, frame-output.ts) go out before
   * the round's file writes, and the publishes read in the next poll phase join this round.
   */
  readonly #afterDeliveries = (): void => {
    setImmediate(this.#run);
  };

  readonly #run = (): void => {
    this.#scheduled = false;
    if (this.#busy || this.#dirty.length === 0 || this.#closed) return;
    this.#startRound();
  };

  /** Called once per finished part of the round in flight; the last one ends the round. */
  readonly #partDone = (err: Error | null): void => {
    if (err !== null && this.#roundErr === null) this.#roundErr = err;
    if (--this.#outstanding === 0) this.#endRound();
  };

  readonly #journalFailed = (err: unknown): void => this.#partDone(err as Error);
  readonly #journalDone = (): void => this.#partDone(null);

  #startRound(): void {
    this.#busy = true;
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
      w = new Waiter(this.#tickets);
      this.#waiters.push(w);
    }
    w.closed = true;
    this.#current = w;
    this.#roundParts = parts;
    this.#roundErr = null;
    this.stats.rounds++;
    this.stats.participantsWritten += parts.length;
    const batch = this.#journal.beginBatch();
    // With few logs to sync, fsyncing them directly costs about what one journal fsync does and
    // writes each byte once instead of twice (journal + log). Past that, fsync cost grows per
    // file (research finding 3), so the journal takes them all.
    let syncing = 0;
    for (const p of parts) if (p.needsSync?.() === true) syncing++;
    const direct = syncing <= this.#directSyncMax;
    // One part for this loop itself, so that parts finishing synchronously cannot end the round early.
    this.#outstanding = 1;
    for (const p of parts) {
      // Counted before the call, so that a part calling done before it returns cannot end the round.
      this.#outstanding++;
      let later = false;
      try {
        later = p.beginRound(batch, direct, this.#partDone);
      } catch (e) {
        if (this.#roundErr === null) this.#roundErr = e as Error;
      }
      if (!later) this.#outstanding--;
    }
    if (batch.entries > 0) {
      this.stats.journalSyncs++;
      this.stats.journalBytes += batch.bytes;
      this.#outstanding++;
      this.#journal.writeBatch(batch).then(this.#journalDone, this.#journalFailed);
    }
    this.#partDone(null);
  }

  #endRound(): void {
    const parts = this.#roundParts;
    const err = this.#roundErr;
    this.#roundParts = [];
    for (const p of parts) p.endRound(err);
    this.#current = null;
    this.#settleWaiters(parts, err);
    if (this.onRound !== null) this.onRound();
    this.#busy = false;
    if (this.#endWaiters.length > 0) {
      const ws = this.#endWaiters;
      this.#endWaiters = [];
      for (const resolve of ws) resolve();
    }
    if (this.#dirty.length > 0) this.#schedule();
  }

  /** Resolves the closed waiters whose records are all stored now; a failed round rejects them all. */
  #settleWaiters(parts: RoundParticipant[], err: Error | null): void {
    for (const p of parts) if (p.heldTicket !== undefined && p.heldTicket() !== Infinity) this.#holders.add(p);
    let held = Infinity;
    if (this.#holders.size > 0) {
      for (const p of this.#holders) {
        const t = p.heldTicket!();
        if (t === Infinity) this.#holders.delete(p);
        else if (t < held) held = t;
      }
    }
    let n = 0;
    while (n < this.#waiters.length) {
      const w = this.#waiters[n]!;
      if (!w.closed || (err === null && w.seq > held)) break;
      n++;
    }
    // Each leaves the list before its listeners run: a listener may call flushed() again.
    for (let i = 0; i < n; i++) this.#waiters.shift()!.settle(err);
  }
}

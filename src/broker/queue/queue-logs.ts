/**
 * A queue's storage: one FileQueueStore on the queue's log, or for a priority queue one per
 * level on logs named "<logName>#p<level>" (PriorityQueueStore). Non-durable queues use the
 * 'none' policy and are deleted at start.
 */
import { PriorityQueueStore, type QueueStore, type Storage } from '../../storage/mod.js';
import type { QueueSettings } from './queue-settings.js';

const LEVEL_SUFFIX = /#p\d+$/;

/** The queue log a log belongs to (itself, or the queue of a priority level's log). */
export const queueLogOf = (logName: string): string => logName.replace(LEVEL_SUFFIX, '');

export interface OpenedQueueStore {
  store: QueueStore;
  /** Per level: the refs below this were in the log before this start (see Queue). */
  recoveredBelow: number[];
}

export async function openQueueStore(storage: Storage, logName: string, durable: boolean, settings: QueueSettings): Promise<OpenedQueueStore> {
  const durability = durable ? 'fsync' : 'none';
  if (settings.maxPriority === undefined || settings.maxPriority <= 0) {
    const store = (await storage.openQueue(logName, { durability })).store;
    return { store, recoveredBelow: [storage.getLog(logName)!.nextOffset] };
  }
  const levels: QueueStore[] = [];
  const recoveredBelow: number[] = [];
  for (let i = 0; i <= settings.maxPriority; i++) {
    const name = `${logName}#p${i}`;
    levels.push((await storage.openQueue(name, { durability })).store);
    recoveredBelow.push(storage.getLog(name)!.nextOffset);
  }
  return { store: new PriorityQueueStore(logName, levels), recoveredBelow };
}

export async function deleteQueueLogs(storage: Storage, logName: string): Promise<void> {
  for (const name of storage.logNames()) if (queueLogOf(name) === logName) await storage.deleteLog(name);
}

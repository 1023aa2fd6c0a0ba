/** The storage engine's surface: the only file other layers import from storage/. */
export { Storage, type StorageOptions, type StorageRecoveryReport } from './storage.js';
export type { Durability } from './durability/policy.js';
export { DURABILITY_VALUES } from './durability/policy.js';
export { GroupCommitter, type CommitStats, type FlushListener } from './durability/group-commit.js';
export { SegmentLog, type LogOptions, type LogRecord, type LogRecoveryReport, type RetentionPolicy } from './log/segment-log.js';
export { RecordType } from './log/record.js';
export type { QueueStore, StoredMessage, QueueStoreStats } from './queue-store/queue-store.js';
export { FileQueueStore, type QueueStoreOptions, type QueueRecoveryReport } from './queue-store/file-queue-store.js';
export { PriorityQueueStore } from './queue-store/priority-queue-store.js';
export { MemoryQueueStore } from './memory/memory-queue-store.js';
export type { MetaStore, MetaKind, MetaStoreStats, RecoveryReport as MetaRecoveryReport } from './meta/meta-store.js';
export { FileMetaStore, type FileMetaStoreOptions } from './meta/file-meta-store.js';
export { MemoryMetaStore } from './memory/memory-meta-store.js';
export type { ScheduleStore, ScheduledEntry, BrowseOptions } from './schedule/schedule-store.js';
export { FileScheduleStore, SCHEDULE_LOG_PREFIX, type ScheduleStoreOptions, type ScheduleRecoveryReport } from './schedule/file-schedule-store.js';
export { MemoryScheduleStore } from './memory/memory-schedule-store.js';

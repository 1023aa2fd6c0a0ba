/**
 * The one error base class and the catalog of codes. Each layer throws its own kind; only
 * protocol sessions translate a kind into wire numbers (see docs/errors.md).
 */

export const ERROR_CATALOG = {
  SLUICE_STORAGE_CORRUPT_SEGMENT: { layer: 'storage', retriable: false, message: 'a segment file failed validation' },
  SLUICE_STORAGE_BAD_VERSION: { layer: 'storage', retriable: false, message: 'a segment has an unknown magic or format version' },
  SLUICE_STORAGE_CLOSED: { layer: 'storage', retriable: false, message: 'the store is closed' },
  SLUICE_STORAGE_LOCKED: { layer: 'storage', retriable: false, message: 'the data directory is locked by another process' },
  SLUICE_STORAGE_OFFSET_OUT_OF_RANGE: { layer: 'storage', retriable: false, message: 'the offset is outside the log' },
  SLUICE_STORAGE_RECORD_TOO_LARGE: { layer: 'storage', retriable: false, message: 'the record is larger than a segment can hold' },
  SLUICE_STORAGE_IO: { layer: 'storage', retriable: true, message: 'an I/O operation failed' },
  SLUICE_STORAGE_UNKNOWN_REF: { layer: 'storage', retriable: false, message: 'the message reference is not in the store' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERROR_CATALOG[code].message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'SluiceError';
    this.code = code;
    this.details = options?.details;
  }
}

/** A segment or record that failed validation, with where it was found. */
export class CorruptSegment extends SluiceError {
  readonly path: string;
  readonly position: number;
  constructor(path: string, position: number, reason: string) {
    super('SLUICE_STORAGE_CORRUPT_SEGMENT', `${path} at ${position}: ${reason}`, { details: { path, position, reason } });
    this.path = path;
    this.position = position;
  }
}

export { crc32c, crc32cJs, crc32cNative } from './crc32c.js';
export { SluiceError, CorruptSegment, ERROR_CATALOG, type ErrorCode } from './errors.js';
export { systemClock, ManualClock, type Clock } from './clock.js';

/**
 * The AMQP 0-9-1 codec: pure functions over bytes. The session layer imports from here.
 * Nothing in this folder touches sockets, the broker or storage.
 */
export { AmqpCodecError, type ErrorScope } from './amqp-codec-error.js';
export { checkProtocolHeader, PROTOCOL_HEADER, PROTOCOL_HEADER_SIZE, type ProtocolHeaderCheck } from './check-protocol-header.js';
export { parseFrame, FrameHeader, NEED_MORE, FRAME_HEADER_SIZE, FRAME_OVERHEAD } from './parse-frame.js';
export {
  decodeTable,
  decodeArray,
  encodeTable,
  encodeArray,
  encodeFieldValue,
  validateTable,
  tableSize,
  inferTag,
  typed,
  Decimal,
  TypedValue,
  MAX_TABLE_DEPTH,
  type FieldTable,
  type FieldValue,
  type FieldType,
  type DecodeTableOptions,
} from './field-table.js';
export {
  parseContentHeader,
  ContentHeader,
  rawProperties,
  validateProperties,
  decodeProperties,
  encodeProperties,
  propertiesSize,
  propertiesToBuffer,
  replaceHeaders,
  readDeliveryMode,
  readPriority,
  readExpiration,
  readTimestamp,
  readHeaders,
  PROPERTY_NAMES,
  BASIC_CLASS_ID,
  CONTENT_HEADER_FIXED_SIZE,
  type BasicProperties,
} from './content-header.js';
export {
  beginFrame,
  endFrame,
  writeMethodFrame,
  writeMethod,
  writeHeartbeat,
  writeHeaderFrame,
  writePropertiesFrame,
  writeBodyFrames,
  writeContentMethod,
  maxBodyChunk,
  bodyFramesSize,
  contentFramesSize,
  type MethodEncoder,
} from './frame-writer.js';
export { writeDeliver, deliverSizeBound, Deliver, NO_PROPERTIES } from './write-deliver.js';
export {
  decodeBasicPublishInto,
  decodeBasicAckInto,
  decodeBasicNackInto,
  decodeBasicRejectInto,
  newBasicPublish,
  newBasicAck,
  newBasicNack,
  newBasicReject,
  ShortStrCache,
} from './fast-decoders.js';
export * from './generated/constants.generated.js';
export * from './generated/methods.generated.js';

/**
 * What the broker throws. No wire numbers here: each protocol front-end maps a kind to its own
 * codes (AMQP: not-found → 404 channel close, command-invalid → 503 connection close, ...).
 * `scope` says whether the failure ends the operation's channel or the whole connection.
 */
export type BrokerErrorKind =
  | 'not-found'
  | 'precondition-failed'
  | 'access-refused'
  | 'resource-locked'
  | 'not-allowed'
  | 'command-invalid'
  | 'not-implemented'
  | 'resource-error'
  | 'internal';

export type BrokerErrorScope = 'channel' | 'connection';

export class BrokerError extends Error {
  readonly kind: BrokerErrorKind;
  readonly scope: BrokerErrorScope;
  constructor(kind: BrokerErrorKind, message: string, scope: BrokerErrorScope = 'channel') {
    super(message);
    this.name = 'BrokerError';
    this.kind = kind;
    this.scope = scope;
  }
}

export const notFound = (what: string): BrokerError => new BrokerError('not-found', `NOT_FOUND - no ${what}`);
export const precondition = (msg: string): BrokerError => new BrokerError('precondition-failed', `PRECONDITION_FAILED - ${msg}`);
export const accessRefused = (msg: string): BrokerError => new BrokerError('access-refused', `ACCESS_REFUSED - ${msg}`);
export const resourceLocked = (msg: string): BrokerError => new BrokerError('resource-locked', `RESOURCE_LOCKED - ${msg}`);

/** RabbitMQ's way of naming a resource in error texts: "queue 'q' in vhost '/'". */
export function describe(kind: 'queue' | 'exchange', name: string, vhost: string): string {
  return `${kind} '${name}' in vhost '${vhost}'`;
}

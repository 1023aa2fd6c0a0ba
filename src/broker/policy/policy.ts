/**
 * RabbitMQ-style policies: a name, a regular expression over queue or exchange names, what it
 * applies to, a priority, and a definition. At most one policy applies to a queue or exchange:
 * the matching one with the highest priority (ties go to the name that sorts first, so the
 * choice does not depend on load order). Loaded from the config file for now.
 */
import { precondition } from '../errors.js';

export interface PolicyDefinition {
  vhost: string;
  name: string;
  pattern: string;
  'apply-to': 'queues' | 'exchanges' | 'all';
  priority: number;
  definition: Record<string, unknown>;
}

/** The definition keys a policy may set (RabbitMQ's names, plus Sluice's retry-delays). */
const KNOWN_KEYS = new Set([
  'message-ttl',
  'expires',
  'dead-letter-exchange',
  'dead-letter-routing-key',
  'max-length',
  'max-length-bytes',
  'overflow',
  'delivery-limit',
  'max-priority',
  'single-active-consumer',
  'retry-delays',
  'alternate-exchange',
]);

interface CompiledPolicy {
  def: PolicyDefinition;
  re: RegExp;
}

export class Policies {
  #list: CompiledPolicy[] = [];

  /** Checks and normalises a policy as given in a config file; throws a 406 BrokerError when invalid. */
  static normalise(raw: Partial<PolicyDefinition> & Record<string, unknown>): PolicyDefinition {
    const name = raw.name;
    if (typeof name !== 'string' || name === '') throw precondition('policy without a name');
    if (typeof raw.pattern !== 'string') throw precondition(`policy '${name}': pattern must be a string`);
    try {
      new RegExp(raw.pattern);
    } catch {
      throw precondition(`policy '${name}': invalid pattern '${raw.pattern}'`);
    }
    const applyTo = raw['apply-to'] ?? 'all';
    if (applyTo !== 'queues' && applyTo !== 'exchanges' && applyTo !== 'all') throw precondition(`policy '${name}': invalid apply-to '${String(applyTo)}'`);
    const def = raw.definition;
    if (def === null || typeof def !== 'object' || Array.isArray(def)) throw precondition(`policy '${name}': definition must be an object`);
    for (const k of Object.keys(def)) if (!KNOWN_KEYS.has(k)) throw precondition(`policy '${name}': unknown key '${k}' in definition`);
    return {
      vhost: typeof raw.vhost === 'string' ? raw.vhost : '/',
      name,
      pattern: raw.pattern,
      'apply-to': applyTo,
      priority: typeof raw.priority === 'number' ? raw.priority : 0,
      definition: def as Record<string, unknown>,
    };
  }

  set(defs: PolicyDefinition[]): void {
    this.#list = defs
      .map((def) => ({ def, re: new RegExp(def.pattern) }))
      .sort((a, b) => b.def.priority - a.def.priority || (a.def.name < b.def.name ? -1 : a.def.name > b.def.name ? 1 : 0));
  }

  all(): PolicyDefinition[] {
    return this.#list.map((p) => p.def);
  }

  /** The policy that applies to a queue or exchange named `name` in `vhost`, if any. */
  match(vhost: string, kind: 'queues' | 'exchanges', name: string): PolicyDefinition | undefined {
    for (const p of this.#list) {
      if (p.def.vhost !== vhost) continue;
      if (p.def['apply-to'] !== 'all' && p.def['apply-to'] !== kind) continue;
      if (p.re.test(name)) return p.def;
    }
    return undefined;
  }
}
